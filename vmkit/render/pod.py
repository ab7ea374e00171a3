"""Workload -> Kubernetes Pod manifest (a plain dict, ready for the API).

Field names follow the core/v1 Pod reference:
https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from vmkit.errors import Unsupported
from vmkit.spec import Workload

__all__ = ["GPU_RESOURCE", "cpu_quantity", "memory_quantity", "render_pod"]

#: The extended resource the NVIDIA device plugin advertises.
GPU_RESOURCE = "nvidia.com/gpu"
_DEFAULT_RUNTIME_CLASSES = {"sandbox": "gvisor", "vm": "kata"}


def cpu_quantity(cpu: float) -> str:
    """A Kubernetes CPU quantity: ``0.5 -> "500m"``, ``2 -> "2"``.

    Kubernetes resolves CPU to the millicore, so a finer request is rounded
    up to the next millicore rather than down to nothing.
    """
    millis = math.ceil(Decimal(repr(cpu)) * 1000)
    if millis % 1000 == 0:
        return str(millis // 1000)
    return f"{millis}m"


def memory_quantity(size: int) -> str:
    """An exact Kubernetes memory quantity: ``4GiB -> "4Gi"``, ``1536MiB -> "1536Mi"``.

    The largest binary suffix that divides the size is used, then a decimal
    one (``4GB -> "4G"``), then plain bytes.
    """
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("G", 10**9), ("M", 10**6)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    if size % 2**10 == 0:
        return f"{size // 2**10}Ki"
    return str(size)


def escape_references(value: str) -> str:
    """Escape ``$`` so the kubelet passes ``value`` to the container verbatim.

    The kubelet expands ``$(VAR)`` in a container's command, args and env
    values, and reduces ``$$`` to ``$`` ("Double $$ are reduced to a single $,
    which allows for escaping the $(VAR_NAME) syntax", Container and EnvVar in
    the Kubernetes API reference, core/v1). Doubling every ``$`` therefore
    gives back exactly the spec's text, as the VM path does.
    """
    return value.replace("$", "$$")


def render_pod(
    workload: Workload,
    replica: int,
    *,
    labels: Mapping[str, str],
    runtime_classes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Pod manifest of one replica, named ``<workload>-<replica>``.

    ``labels`` is used as given (the caller includes vmkit's ownership
    labels). ``command``/``args`` keep Pod semantics, their text and env
    values passed verbatim (``$`` escaped, see :func:`escape_references`);
    ``env`` keeps the spec's order; ``resources`` become equal requests and limits. Secure
    defaults: no service-account token, the runtime's default seccomp profile,
    no privilege escalation. ``isolation`` picks a RuntimeClass
    (``runtime_classes`` maps "sandbox"/"vm" to class names; gVisor and Kata by
    default). Raises Unsupported for a workload without an image.
    """
    if workload.image is None:
        raise Unsupported(
            "a Kubernetes workload needs an image", provider="kubernetes", operation="render_pod"
        )
    quantities = {
        "cpu": cpu_quantity(workload.resources.cpu),
        "memory": memory_quantity(workload.resources.memory),
    }
    if workload.resources.gpu > 0:
        quantities[GPU_RESOURCE] = str(workload.resources.gpu)
    container: dict[str, Any] = {"name": workload.name, "image": workload.image}
    # Empty lists mean "unset" to the API server too, so both are left out.
    if workload.command:
        container["command"] = [escape_references(part) for part in workload.command]
    if workload.args:
        container["args"] = [escape_references(part) for part in workload.args]
    if workload.env:
        container["env"] = [
            {"name": key, "value": escape_references(value)} for key, value in workload.env.items()
        ]
    if workload.ports:
        container["ports"] = [
            {"containerPort": port.port, "protocol": port.protocol.upper()}
            for port in workload.ports
        ]
    container["resources"] = {"requests": dict(quantities), "limits": dict(quantities)}
    container["securityContext"] = {"allowPrivilegeEscalation": False}
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "restartPolicy": "Always",
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if workload.isolation != "container":
        classes = {**_DEFAULT_RUNTIME_CLASSES, **(runtime_classes or {})}
        spec["runtimeClassName"] = classes[workload.isolation]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{workload.name}-{replica}", "labels": dict(labels)},
        "spec": spec,
    }
