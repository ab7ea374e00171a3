"""Pieces of Pod and Node status the simulated kubelet writes.

Shapes: PodStatus, ContainerStatus and PodCondition of
https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
(``kubernetes/client/models/v1_container_status.py`` requires image, imageID,
name, ready and restartCount) and Node of
https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/node-v1/.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

from vmkit.testing.fakes.kubernetes.pods import GPU, normalize_image
from vmkit.testing.fakes.kubernetes.shapes import JSON, format_time

if TYPE_CHECKING:
    from vmkit.testing.fakes.kubernetes.kubelet import SimConfig

__all__ = [
    "current_status",
    "image_id",
    "node_object",
    "pull_error",
    "put_status",
    "set_condition",
    "waiting_status",
]


def node_object(config: SimConfig, at: float) -> JSON:
    """The Node as ``GET /api/v1/nodes/NAME`` shows it."""
    resources = {
        "cpu": config.node_cpu,
        "memory": config.node_memory,
        "pods": str(config.node_pods),
    }
    if config.node_gpu:
        resources[GPU] = str(config.node_gpu)
    name = config.node_name
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": format_time(at),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": config.node_ip},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": format_time(at),
                    "lastTransitionTime": format_time(at),
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0",
                "containerRuntimeVersion": "containerd://1.7.27",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


# Pod conditions in the order the kubelet writes them.
CONDITION_ORDER = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
]


def set_condition(
    pod: JSON,
    kind: str,
    status: str,
    at: float,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    conditions: list[JSON] = pod["status"].setdefault("conditions", [])
    old = next((c for c in conditions if c["type"] == kind), None)
    condition: JSON = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": (
            old["lastTransitionTime"] if old and old["status"] == status else format_time(at)
        ),
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    conditions[:] = sorted(
        [c for c in conditions if c["type"] != kind] + [condition],
        key=lambda c: CONDITION_ORDER.index(c["type"]),
    )


def current_status(pod: JSON, name: str) -> JSON:
    for status in pod["status"].get("containerStatuses") or []:
        if status["name"] == name:
            return dict(status)
    return {}


def put_status(pod: JSON, status: JSON) -> None:
    statuses: list[JSON] = pod["status"].setdefault("containerStatuses", [])
    for index, old in enumerate(statuses):
        if old["name"] == status["name"]:
            statuses[index] = status
            return
    statuses.append(status)


def waiting_status(name: str, image: str, restarts: int, reason: str, message: str | None) -> JSON:
    waiting: dict[str, Any] = {"reason": reason}
    if message:
        waiting["message"] = message
    status: JSON = {
        "name": name,
        "image": normalize_image(image),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": restarts,
        "state": {"waiting": waiting},
        "lastState": {},
    }
    return status


def image_id(image: str) -> str:
    reference = normalize_image(image).split("@", 1)[0]
    repository = reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] else reference
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def pull_error(image: str) -> str:
    # What containerd answers for a missing tag, relayed by the kubelet.
    full = normalize_image(image)
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": '
        f'failed to resolve reference "{full}": {full}: not found'
    )
