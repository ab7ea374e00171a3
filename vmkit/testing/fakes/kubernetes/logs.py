"""``GET .../pods/NAME/log``: the text the fake containers wrote.

Which container instance a read returns, and the errors for a container
that never started, follow the kubelet (pkg/kubelet/kubelet_pods.go
validateContainerLogStatus, e.g. ``container "app" in pod "web-0" is waiting
to start: image can't be pulled``) and the API server
(pkg/registry/core/pod/strategy.go LogLocation: a container name is required
when the pod has several; a pod not bound to a node has an empty log). Query
parameters: PodLogOptions (container, previous, tailLines, limitBytes,
timestamps, sinceSeconds, follow) of
https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#read-log-of-the-specified-pod
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.kubernetes.kubelet import Cluster
from vmkit.testing.fakes.kubernetes.shapes import JSON, format_nano
from vmkit.testing.fakes.kubernetes.watch import int_arg

__all__ = ["read_log"]

Lines = list[tuple[float, str]]


def read_log(
    request: Request,
    pod: JSON,
    cluster: Cluster,
    cond: threading.Condition,
    stopped: Callable[[], bool],
) -> Response:
    """The log response (text/plain), or HttpError 400 as the kubelet refuses it.
    The caller holds the lock; a ``follow`` stream waits for new lines without it."""
    meta = pod["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    names = [c["name"] for c in pod["spec"]["containers"]]
    container = request.arg("container")
    if not container:
        if len(names) != 1:
            raise HttpError(
                400,
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(names)}]",
            )
        container = names[0]
    elif container not in names:
        raise HttpError(400, f"container {container} is not valid for pod {name}")
    if not pod["spec"].get("nodeName"):
        return Response(200, b"", content_type="text/plain")
    status = next(
        (s for s in pod["status"].get("containerStatuses") or [] if s["name"] == container), None
    )
    sim = cluster.sim_for(namespace, name)
    if status is None or sim is None:
        raise HttpError(400, f'container "{container}" in pod "{name}" is not available')
    state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
    previous = (request.arg("previous") or "").lower() in ("true", "1")
    if previous:
        if not last:
            raise HttpError(
                400, f'previous terminated container "{container}" in pod "{name}" not found'
            )
        index = -2 if "running" in state else -1
    elif "running" in state or "terminated" in state or last:
        index = -1
    else:
        reason = (state.get("waiting") or {}).get("reason", "")
        detail = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        raise HttpError(
            400, f'container "{container}" in pod "{name}" is waiting to start: {detail}'
        )
    instances = sim.containers[container].instances
    lines: Lines = instances[index] if len(instances) >= -index else []
    text = _render(request, lines)
    follow = (request.arg("follow") or "").lower() in ("true", "1")
    if not follow or previous or "running" not in state:
        return Response(200, text.encode(), content_type="text/plain")
    return Response(
        200,
        stream=_follow(
            request,
            text,
            lines,
            instances,
            cond,
            lambda: stopped() or (cluster.sims.get(sim.uid) is not sim),
        ),
        content_type="text/plain",
    )


def _render(request: Request, lines: Lines, *, tail: bool = True) -> str:
    since = int_arg(request, "sinceSeconds")
    selected = lines
    if since is not None:
        cutoff = time.time() - since
        selected = [(at, line) for at, line in selected if at >= cutoff]
    count = int_arg(request, "tailLines")
    if tail and count is not None:
        selected = selected[-count:] if count > 0 else []
    stamps = (request.arg("timestamps") or "").lower() in ("true", "1")
    text = "".join(
        f"{format_nano(at)} {line}\n" if stamps else f"{line}\n" for at, line in selected
    )
    limit = int_arg(request, "limitBytes")
    if limit is not None:
        text = text.encode()[:limit].decode(errors="ignore")
    return text


def _follow(
    request: Request,
    first: str,
    lines: Lines,
    instances: list[Lines],
    cond: threading.Condition,
    stopped: Callable[[], bool],
) -> Iterator[bytes]:
    """Stream until the container instance is replaced or ``stopped()`` (the pod
    is gone or the server stops)."""
    yield first.encode()
    sent = len(lines)
    while True:
        with cond:
            while len(lines) == sent:
                if stopped() or instances[-1] is not lines:
                    return
                cond.wait(0.5)
            fresh = lines[sent:]
            sent = len(lines)
        yield _render(request, fresh, tail=False).encode()
