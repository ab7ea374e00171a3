"""Pure functions between vmkit's records and the core/v1 Pod's JSON shape.

Nothing here calls the API server. Pods are handled as the API's own JSON
(camelCase, as ``GET /api/v1/namespaces/NS/pods`` answers), so ``Machine.raw``
is what ``kubectl get pod -o json`` shows. Field names: the Pod reference,
https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from vmkit.errors import ConfigError, SpecError
from vmkit.machine import Machine, MachineState
from vmkit.provider import MANAGED_BY, REPLICA_TAG, SPEC_TAG, WORKLOAD_TAG, ownership_labels
from vmkit.render import render_pod
from vmkit.render.pod import GPU_RESOURCE
from vmkit.spec import Workload

__all__ = [
    "OPTION_NAMES",
    "PROVIDER",
    "START_FAILURES",
    "KubernetesOptions",
    "failure_reason",
    "parse_options",
    "pod_manifest",
    "pod_runtime_class",
    "pod_state",
    "recreate_body",
    "size_of",
    "start_failure",
    "target_runtime_classes",
    "to_machine",
    "user_labels",
    "workload_selector",
]

PROVIDER = "kubernetes"
#: Label selector of every pod vmkit manages (ownership is the workload label).
MANAGED_SELECTOR = WORKLOAD_TAG

# Waiting reasons of a container that will not start without a change: the
# kubelet's image errors (pkg/kubelet/images/types.go: ErrImagePull,
# ImagePullBackOff, InvalidImageName, ErrImageNeverPull) and its crash-loop
# back-off (pkg/kubelet/kuberuntime, CrashLoopBackOff).
START_FAILURES = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
    }
)

#: The isolation levels a RuntimeClass provides ("container" is the cluster's default runtime).
ISOLATION_LEVELS = ("sandbox", "vm")
OPTION_NAMES = (
    "image_pull_secrets",
    "node_selector",
    "priority_class",
    "runtime_classes",
    "service_account",
)
# DNS-1123 subdomain: names of service accounts, secrets, priority and runtime classes.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class KubernetesOptions:
    """``Workload.options["kubernetes"]``, validated."""

    runtime_classes: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    priority_class: str | None = None


def _name(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 253 or not _SUBDOMAIN.match(value):
        raise SpecError(
            f"options.kubernetes.{key}",
            f"must be a DNS-1123 subdomain (lowercase letters, digits, '-', '.'), got {value!r}",
        )
    return value


def _string_map(options: Mapping[str, Any], key: str) -> dict[str, str]:
    value = options.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f"options.kubernetes.{key}", "must be a mapping of strings to strings")
    return dict(value)


def target_runtime_classes(value: Any) -> dict[str, str]:
    """Validate the ``runtime_classes`` option of ``connect()``: a mapping of
    "sandbox"/"vm" to RuntimeClass names. Raises ConfigError naming the key."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            'kubernetes: runtime_classes must be a mapping such as {"vm": "kata-qemu"}'
        )
    for isolation, class_name in value.items():
        if isolation not in ISOLATION_LEVELS:
            raise ConfigError(
                f"kubernetes: runtime_classes.{isolation}: unknown isolation level; "
                "only 'sandbox' and 'vm' use a RuntimeClass"
            )
        if not isinstance(class_name, str) or not _is_subdomain(class_name):
            raise ConfigError(
                f"kubernetes: runtime_classes.{isolation}: a RuntimeClass name is a DNS-1123 "
                f"subdomain (lowercase letters, digits, '-', '.'), got {class_name!r}"
            )
    return dict(value)


def _is_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_SUBDOMAIN.match(value))


def parse_options(
    workload: Workload, target_classes: Mapping[str, str] | None = None
) -> KubernetesOptions:
    """Validate ``options["kubernetes"]``. Raises SpecError naming
    ``options.kubernetes.<key>``. ``target_classes`` (the ``runtime_classes``
    of ``connect()``) apply where the workload's own ``runtime_classes`` do
    not say: the workload's options win."""
    options = workload.options_for(PROVIDER)
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise SpecError(
            f"options.kubernetes.{unknown[0]}",
            f"unknown option; accepted: {', '.join(OPTION_NAMES)}",
        )
    runtime_classes = _string_map(options, "runtime_classes")
    for isolation, class_name in runtime_classes.items():
        if isolation not in ISOLATION_LEVELS:
            raise SpecError(
                f"options.kubernetes.runtime_classes.{isolation}",
                "only 'sandbox' and 'vm' isolation use a RuntimeClass",
            )
        if not _is_subdomain(class_name):
            raise SpecError(
                f"options.kubernetes.runtime_classes.{isolation}",
                f"must be a DNS-1123 subdomain (lowercase letters, digits, '-', '.'), "
                f"got {class_name!r}",
            )
    secrets = options.get("image_pull_secrets")
    if secrets is None:
        secrets = []
    if isinstance(secrets, str) or not isinstance(secrets, list):
        raise SpecError("options.kubernetes.image_pull_secrets", "must be a list of secret names")
    for index, secret in enumerate(secrets):
        _name({f"image_pull_secrets.{index}": secret}, f"image_pull_secrets.{index}")
    return KubernetesOptions(
        runtime_classes={**(target_classes or {}), **runtime_classes},
        node_selector=_string_map(options, "node_selector"),
        service_account=_name(options, "service_account"),
        image_pull_secrets=tuple(secrets),
        priority_class=_name(options, "priority_class"),
    )


def workload_selector(workload: str | None) -> str:
    """The label selector of one workload's pods, or of every managed pod."""
    return f"{WORKLOAD_TAG}={workload}" if workload is not None else MANAGED_SELECTOR


def pod_manifest(
    workload: Workload, replica: int, namespace: str, options: KubernetesOptions
) -> dict[str, Any]:
    """The Pod of one replica, exactly as it is sent (see vmkit.render.render_pod).

    vmkit's ownership labels and ``app.kubernetes.io/managed-by=vmkit`` are
    added to the user's labels; ``options`` add a node selector, a service
    account (its token is still not mounted), image pull secrets and a
    priority class. Raises Unsupported for a workload without an image.
    """
    labels = ownership_labels(workload, replica)
    labels[MANAGED_BY[0]] = MANAGED_BY[1]
    pod = render_pod(workload, replica, labels=labels, runtime_classes=options.runtime_classes)
    pod["metadata"]["namespace"] = namespace
    spec = pod["spec"]
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    if options.service_account:
        spec["serviceAccountName"] = options.service_account
    if options.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in options.image_pull_secrets]
    if options.priority_class:
        spec["priorityClassName"] = options.priority_class
    return pod


# ------------------------------------------------------------------- reading


def _labels(pod: Mapping[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The user's labels: vmkit's own and ``app.kubernetes.io/managed-by`` left out."""
    return {k: v for k, v in labels.items() if not k.startswith("vmkit-") and k != MANAGED_BY[0]}


def _container_statuses(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]


def start_failure(pod: Mapping[str, Any]) -> str | None:
    """Why the pod cannot start without a change, or None.

    A container waiting in one of :data:`START_FAILURES`, or the scheduler's
    ``PodScheduled=False`` condition with reason ``Unschedulable`` (its
    message says what is short, e.g. "0/3 nodes are available: 3
    Insufficient cpu."), PodCondition in the Pod reference.
    """
    for container in _container_statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in START_FAILURES:
            message = waiting.get("message")
            return f"{reason}: {message}" if message else str(reason)
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            message = condition.get("message")
            return f"Unschedulable: {message}" if message else "Unschedulable"
    return None


def failure_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod failed, from its status: a start failure, else the pod's
    own reason (e.g. ``Evicted``), else how its container terminated."""
    found = start_failure(pod)
    if found:
        return found
    status = pod.get("status") or {}
    if status.get("reason") or status.get("message"):
        return ": ".join(str(p) for p in (status.get("reason"), status.get("message")) if p)
    for container in _container_statuses(pod):
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated:
            reason = terminated.get("reason") or "Terminated"
            return f"{reason} (exit code {terminated.get('exitCode')})"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "deleted"
    return str(status.get("phase") or "unknown")


def pod_state(pod: Mapping[str, Any]) -> MachineState:
    """The provider-neutral state of a pod.

    A deletion timestamp means DELETING. Pods run with ``restartPolicy:
    Always``, so phase ``Failed`` (evicted, node lost) and ``Succeeded``
    (cannot happen with Always, but would mean it no longer serves) are
    FAILED, and so is a pod that cannot start (:func:`start_failure`).
    ``Running`` with the ``Ready`` condition True is RUNNING; any other
    ``Pending`` or ``Running`` is PENDING (still starting).
    """
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return MachineState.DELETING
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded") or start_failure(pod) is not None:
        return MachineState.FAILED
    if phase == "Running":
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        return MachineState.RUNNING if ready else MachineState.PENDING
    if phase in ("Pending", None):
        return MachineState.PENDING
    return MachineState.UNKNOWN


def _cpu_text(quantity: str) -> str:
    try:
        value = Decimal(quantity[:-1]) / 1000 if quantity.endswith("m") else Decimal(quantity)
    except InvalidOperation:
        return quantity
    return f"{value.normalize():f}"


def size_of(pod: Mapping[str, Any]) -> str | None:
    """The first container's requests, short: ``"2cpu/4Gi"``, ``"0.5cpu/512Mi/1gpu"``."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return None
    requests = (containers[0].get("resources") or {}).get("requests") or {}
    parts = []
    if "cpu" in requests:
        parts.append(f"{_cpu_text(str(requests['cpu']))}cpu")
    if "memory" in requests:
        parts.append(str(requests["memory"]))
    if GPU_RESOURCE in requests:
        parts.append(f"{requests[GPU_RESOURCE]}gpu")
    return "/".join(parts) or None


def _replica(labels: Mapping[str, str], name: str, workload: str) -> int | None:
    text = labels.get(REPLICA_TAG)
    if text is None and name.startswith(f"{workload}-"):
        text = name[len(workload) + 1 :]
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def to_machine(pod: Mapping[str, Any], location: str) -> Machine:
    """The Machine of a managed pod: id = the pod's uid (see the provider's docs)."""
    meta = pod.get("metadata") or {}
    labels = _labels(pod)
    name = str(meta.get("name") or "")
    workload = labels.get(WORKLOAD_TAG, "")
    containers = (pod.get("spec") or {}).get("containers") or []
    return Machine(
        id=str(meta.get("uid") or ""),
        name=name,
        provider=PROVIDER,
        kind="container",
        workload=workload,
        replica=_replica(labels, name, workload),
        state=pod_state(pod),
        size=size_of(pod),
        image=containers[0].get("image") if containers else None,
        location=location,
        private_ip=(pod.get("status") or {}).get("podIP") or None,
        public_ip=None,
        labels=user_labels(labels),
        created_at=_time(meta.get("creationTimestamp")),
        spec_hash=labels.get(SPEC_TAG),
        raw=dict(pod),
    )


def pod_runtime_class(pod: Mapping[str, Any]) -> str | None:
    """The RuntimeClass a pod (or a pod body) names; None for the default runtime."""
    return (pod.get("spec") or {}).get("runtimeClassName") or None


def recreate_body(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A create body for a pod like ``pod`` (same name, labels, annotations
    and spec), to be scheduled afresh: server-set metadata, the node binding,
    the RuntimeClass overhead and the status are left out."""
    meta = pod.get("metadata") or {}
    spec = copy.deepcopy(dict(pod.get("spec") or {}))
    spec.pop("nodeName", None)
    # RuntimeClass admission sets spec.overhead from the class and refuses a
    # pod whose overhead differs from the class's current one
    # (plugin/pkg/admission/runtimeclass/admission.go), so the new pod lets
    # admission set it again.
    spec.pop("overhead", None)
    new_meta: dict[str, Any] = {"name": meta.get("name"), "labels": dict(meta.get("labels") or {})}
    if meta.get("namespace"):
        new_meta["namespace"] = meta["namespace"]
    if meta.get("annotations"):
        new_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": new_meta, "spec": spec}
