"""Pod admission: validation (422 Invalid) and the API server's defaulting.

What is checked and defaulted follows pkg/apis/core/validation and
pkg/apis/core/v1/defaults.go of kubernetes/kubernetes, restricted to the
fields a workload uses; field names are those of
https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from vmkit.testing.fakes.kubernetes.shapes import (
    JSON,
    FieldError,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    is_label_key,
    label_errors,
    parse_quantity,
)

__all__ = ["PodRequests", "default_pod", "normalize_image", "pod_requests", "validate_pod"]

GPU = "nvidia.com/gpu"
_NATIVE = {"cpu", "memory", "ephemeral-storage"}
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PROTOCOLS = ("TCP", "UDP", "SCTP")


class QuantityError(ValueError):
    """A malformed quantity: the API server fails decoding with 400."""


def _quantities(resources: Any, section: str) -> dict[str, Decimal]:
    block = (resources or {}).get(section) or {}
    parsed = {}
    for name, value in block.items():
        try:
            parsed[name] = parse_quantity(value)
        except ValueError as exc:
            raise QuantityError(str(exc)) from exc
    return parsed


def validate_pod(pod: JSON) -> list[FieldError]:
    """Every field error of ``pod`` (empty when valid). Raises QuantityError
    for a quantity the decoder cannot read (a 400, not a 422)."""
    errors: list[FieldError] = []
    meta = pod.get("metadata") or {}
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        errors.append(FieldError("required", "metadata.name", "name or generateName is required"))
    elif name:
        errors.extend(dns1123_subdomain_errors("metadata.name", name))
    errors.extend(label_errors("metadata.labels", meta.get("labels")))
    finalizers = meta.get("finalizers")
    if finalizers is not None and not isinstance(finalizers, list):
        errors.append(FieldError("invalid", "metadata.finalizers", "must be a list", finalizers))
    for index, finalizer in enumerate(finalizers if isinstance(finalizers, list) else []):
        # ValidateFinalizerName: a qualified name, as a label key.
        if not isinstance(finalizer, str) or not is_label_key(finalizer):
            errors.append(
                FieldError(
                    "invalid",
                    f"metadata.finalizers[{index}]",
                    "name part must consist of alphanumeric characters, '-', '_' or '.'",
                    finalizer,
                )
            )
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError("required", "spec.containers"))
    seen: set[str] = set()
    for index, container in enumerate(containers):
        errors.extend(_container_errors(f"spec.containers[{index}]", container, seen))
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in _RESTART_POLICIES:
        supported = ", ".join(f'"{p}"' for p in _RESTART_POLICIES)
        errors.append(
            FieldError(
                "unsupported", "spec.restartPolicy", f"supported values: {supported}", policy
            )
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        errors.append(
            FieldError("invalid", "spec.terminationGracePeriodSeconds", "must be >= 0", grace)
        )
    return errors


def _container_errors(path: str, container: JSON, seen: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    cname = container.get("name")
    if not cname:
        errors.append(FieldError("required", f"{path}.name"))
    else:
        errors.extend(dns1123_label_errors(f"{path}.name", cname))
        if cname in seen:
            errors.append(FieldError("duplicate", f"{path}.name", value=cname))
        seen.add(cname)
    if not container.get("image"):
        errors.append(FieldError("required", f"{path}.image"))
    for pindex, port in enumerate(container.get("ports") or []):
        number = port.get("containerPort")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            errors.append(
                FieldError(
                    "invalid",
                    f"{path}.ports[{pindex}].containerPort",
                    "must be between 1 and 65535, inclusive",
                    number,
                )
            )
        protocol = port.get("protocol", "TCP")
        if protocol not in _PROTOCOLS:
            supported = ", ".join(f'"{p}"' for p in _PROTOCOLS)
            errors.append(
                FieldError(
                    "unsupported",
                    f"{path}.ports[{pindex}].protocol",
                    f"supported values: {supported}",
                    protocol,
                )
            )
    resources = container.get("resources")
    limits = _quantities(resources, "limits")
    requests = _quantities(resources, "requests")
    for rname, request in requests.items():
        limit = limits.get(rname)
        if rname not in _NATIVE and "/" in rname:
            # Extended resources cannot be overcommitted: a request needs an equal limit.
            if limit is None:
                errors.append(
                    FieldError(
                        "required",
                        f"{path}.resources.limits",
                        "Limit must be set for non overcommitable resources",
                    )
                )
            elif limit != request:
                errors.append(
                    FieldError(
                        "invalid",
                        f"{path}.resources.requests[{rname}]",
                        f"must be equal to {rname} limit of {limits_text(resources, rname)}",
                        (resources or {})["requests"][rname],
                    )
                )
        elif limit is not None and request > limit:
            errors.append(
                FieldError(
                    "invalid",
                    f"{path}.resources.requests",
                    f"must be less than or equal to {rname} limit of "
                    f"{limits_text(resources, rname)}",
                    str((resources or {})["requests"][rname]),
                )
            )
    return errors


def limits_text(resources: Any, name: str) -> str:
    return str(((resources or {}).get("limits") or {}).get(name))


def normalize_image(image: str) -> str:
    """The fully qualified reference a container runtime reports in
    ``containerStatuses[].image`` ("nginx:1.27" -> "docker.io/library/nginx:1.27")."""
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
        if "/" not in path:
            path = f"library/{path}"
    else:
        domain, path = first, rest
    if digest:
        return f"{domain}/{path}@{digest}"
    last = path.rsplit("/", 1)[-1]
    if ":" not in last:
        path = f"{path}:latest"
    return f"{domain}/{path}"


def _pull_policy(image: str) -> str:
    # defaults.go: Always for ":latest" or an untagged image, IfNotPresent otherwise.
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def default_pod(pod: JSON) -> JSON:
    """A copy of ``pod`` with the API server's defaults and admission applied:
    spec defaults, requests defaulted from limits, the service-account token
    volume unless ``automountServiceAccountToken`` is false, qosClass."""
    pod = copy.deepcopy(pod)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("serviceAccountName", "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    # DefaultTolerationSeconds admission adds these two.
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    automount = spec.get("automountServiceAccountToken") is not False
    volume_name = f"kube-api-access-{secrets.token_hex(3)[:5]}"
    if automount:
        # ServiceAccount admission projects the token, CA and namespace.
        spec.setdefault("volumes", []).append(
            {
                "name": volume_name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {
                                            "apiVersion": "v1",
                                            "fieldPath": "metadata.namespace",
                                        },
                                    }
                                ]
                            }
                        },
                    ],
                },
            }
        )
    for container in spec.get("containers") or []:
        container.setdefault("imagePullPolicy", _pull_policy(container.get("image", "")))
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        resources = container.setdefault("resources", {})
        limits = resources.get("limits") or {}
        if limits:
            requests = resources.setdefault("requests", {})
            for rname, value in limits.items():
                requests.setdefault(rname, value)
        if automount:
            container.setdefault("volumeMounts", []).append(
                {
                    "name": volume_name,
                    "readOnly": True,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                }
            )
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec.get("containers") or [])}
    return pod


def _qos_class(containers: list[JSON]) -> str:
    # pkg/apis/core/helper/qos: only cpu and memory count.
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests = _quantities(resources, "requests")
        limits = _quantities(resources, "limits")
        for rname in ("cpu", "memory"):
            if rname in requests or rname in limits:
                any_set = True
            if rname not in limits or requests.get(rname, limits[rname]) != limits[rname]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


@dataclass(frozen=True)
class PodRequests:
    """What the scheduler sums: cpu in cores, memory in bytes, GPUs."""

    cpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)
    gpu: Decimal = Decimal(0)

    def __add__(self, other: PodRequests) -> PodRequests:
        return PodRequests(self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu)


def pod_requests(pod: JSON) -> PodRequests:
    """The sum of the containers' requests of a defaulted pod, plus its
    ``spec.overhead`` (set from its RuntimeClass), as the scheduler counts
    them ("Pod Overhead",
    https://kubernetes.io/docs/concepts/scheduling-eviction/pod-overhead/)."""
    spec = pod.get("spec") or {}
    sections = [(c.get("resources"), "requests") for c in spec.get("containers") or []]
    sections.append(({"overhead": spec.get("overhead") or {}}, "overhead"))
    total = PodRequests()
    for resources, section in sections:
        requests = _quantities(resources, section)
        total = total + PodRequests(
            requests.get("cpu", Decimal(0)),
            requests.get("memory", Decimal(0)),
            requests.get(GPU, Decimal(0)),
        )
    return total
