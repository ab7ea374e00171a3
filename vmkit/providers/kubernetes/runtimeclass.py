"""Isolation on demand: the RuntimeClass a workload's pods run under.

``isolation="sandbox"`` and ``"vm"`` set the Pod's ``runtimeClassName`` (gVisor's
``gvisor`` and Kata's ``kata`` unless ``connect(runtime_classes=...)`` or the
workload's ``options.kubernetes.runtime_classes`` name others). A RuntimeClass
is a cluster-scoped object an administrator creates once the runtime is on
the nodes (https://kubernetes.io/docs/concepts/containers/runtime-class/), read
with ``GET /apis/node.k8s.io/v1/runtimeclasses/NAME``
(https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/runtime-class-v1/).

Before a plan creates pods, the class is read once: a cluster without it
fails the plan (and so the deploy) with Unsupported, before any pod is made
or replaced. A caller whose RBAC role may not read runtimeclasses (403) is
not blocked: the API server's RuntimeClass admission then refuses each pod
with 403 ``pod rejected: RuntimeClass "NAME" not found`` when the class is
missing (plugin/pkg/admission/runtimeclass/admission.go in
kubernetes/kubernetes), which :mod:`.errors` maps to Unsupported too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vmkit.errors import AuthError, NotFound, Unsupported
from vmkit.plan import Action
from vmkit.providers.kubernetes import translate as tr
from vmkit.providers.kubernetes.errors import PROVIDER, api_status, status_body

if TYPE_CHECKING:
    from vmkit.providers.kubernetes.provider import KubernetesProvider

__all__ = ["missing_class_message", "replace_drifted", "require_runtime_class"]

log = logging.getLogger(__name__)

#: The runtime behind each isolation level by default, and where to install it.
RUNTIMES = {
    "sandbox": ("gVisor", "https://gvisor.dev/docs/user_guide/containerd/quick_start/"),
    "vm": (
        "Kata Containers",
        "https://github.com/kata-containers/kata-containers/tree/main/tools/packaging/kata-deploy",
    ),
}
OPERATION = "k8s:ReadRuntimeClass"


def missing_class_message(isolation: str, class_name: str, *, api_served: bool = True) -> str:
    """What a user reads when ``class_name`` is not on the cluster: the class,
    the isolation level, and the two ways out."""
    runtime, guide = RUNTIMES.get(isolation, ("its runtime", ""))
    if api_served:
        found = (
            f"which this cluster does not have (GET /apis/node.k8s.io/v1/runtimeclasses/"
            f"{class_name}: 404)"
        )
    else:
        found = (
            "but this API server does not serve RuntimeClasses (node.k8s.io/v1, "
            "Kubernetes 1.20 and later)"
        )
    where = f" ({guide})" if guide else ""
    return (
        f'isolation="{isolation}" needs the RuntimeClass "{class_name}", {found}; no pod was '
        f"created. Install {runtime} on the nodes and create the RuntimeClass{where}, or map "
        f'"{isolation}" to a RuntimeClass the cluster has (kubectl get runtimeclasses): '
        f'connect("kubernetes", runtime_classes={{"{isolation}": "<class>"}}) or the '
        "workload's options.kubernetes.runtime_classes"
    )


def require_runtime_class(provider: KubernetesProvider, isolation: str, class_name: str) -> None:
    """Read the RuntimeClass once; Unsupported naming it when the cluster has
    none of that name. A 403 (no RBAC to read runtimeclasses) is logged and
    let through: pod admission has the last word (see the module)."""
    try:
        provider.read_runtime_class(class_name)
    except NotFound as exc:
        # A missing object is a Status naming the resource; a group the server
        # does not serve is a bare 404 "the server could not find the requested resource".
        served = (status_body(exc).get("details") or {}).get("kind") == "runtimeclasses"
        raise Unsupported(
            missing_class_message(isolation, class_name, api_served=served),
            provider=PROVIDER,
            operation=OPERATION,
        ) from exc
    except AuthError as exc:
        if api_status(exc) != 403:
            raise
        log.warning(
            "kubernetes: cannot check that RuntimeClass %s exists (%s); creating the pods "
            "anyway: the API server refuses them if it does not",
            class_name,
            exc,
        )


def replace_drifted(actions: Iterable[Action], wanted: str | None) -> tuple[Action, ...]:
    """``actions`` with each kept pod that runs under another RuntimeClass
    than ``wanted`` replaced: the class can come from ``connect()``, which
    the spec hash does not cover, and a pod's runtimeClassName cannot change
    in place (Pod spec fields are immutable once created). With no class
    wanted (``isolation="container"``) every kept pod stays, whatever class
    it runs under: a mutating admission policy may give every pod one (a
    cluster's default runtime), and a replacement would get it again, on
    every deploy."""
    result = []
    for action in actions:
        have = tr.pod_runtime_class(action.machine.raw) if action.machine else None
        drifted = wanted is not None and have != wanted
        if action.kind == "keep" and action.machine is not None and drifted:
            reason = f"runtime class {have or '(default)'} -> {wanted or '(default)'}"
            action = Action("replace", action.replica, action.machine, reason)
        result.append(action)
    return tuple(sorted(result, key=lambda a: (a.replica, a.kind)))
