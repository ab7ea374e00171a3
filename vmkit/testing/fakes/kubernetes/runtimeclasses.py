"""RuntimeClass (node.k8s.io/v1): the object, its REST routes, API discovery
of its group, and the RuntimeClass admission every pod create goes through.

Shape: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/runtime-class-v1/
(cluster-scoped; ``handler`` required, ``overhead.podFixed`` and
``scheduling.nodeSelector``/``tolerations`` optional). Served at
``/apis/node.k8s.io/v1/runtimeclasses[/NAME]``, as the official client's
``NodeV1Api`` calls it (kubernetes/client/api/node_v1_api.py).

Admission follows plugin/pkg/admission/runtimeclass/admission.go of
kubernetes/kubernetes: a pod naming a RuntimeClass that does not exist is
refused with 403 Forbidden ``pods "<pod>" is forbidden: pod rejected:
RuntimeClass "<name>" not found`` (admission.NewForbidden around the
plugin's error); an existing class's ``overhead.podFixed`` becomes the
pod's ``spec.overhead`` (a different overhead already set is refused), and
its scheduling node selector and tolerations are merged into the pod's (a
conflicting node selector value is refused).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.kubernetes.shapes import (
    JSON,
    FieldError,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    format_time,
    invalid_status_message,
    parse_quantity,
)
from vmkit.testing.fakes.kubernetes.store import Store

__all__ = ["API_VERSION", "GROUP", "PATH", "RuntimeClasses", "runtime_class_object"]

GROUP = "node.k8s.io"
API_VERSION = f"{GROUP}/v1"
PATH = f"/apis/{API_VERSION}"
RESOURCE = "runtimeclasses"
KIND = "RuntimeClass"
#: What apierrors prints for the resource: ``runtimeclasses.node.k8s.io "x" not found``.
QUALIFIED = f"{RESOURCE}.{GROUP}"

Route = tuple[str, str, str, Callable[[Request], Response]]


def runtime_class_object(
    name: str,
    handler: str,
    at: float,
    *,
    overhead: Mapping[str, str] | None = None,
    scheduling: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> JSON:
    """A stored RuntimeClass; ``overhead`` is its ``podFixed`` quantities."""
    obj: JSON = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": format_time(at),
        },
        "handler": handler,
    }
    if labels:
        obj["metadata"]["labels"] = dict(labels)
    if overhead:
        obj["overhead"] = {"podFixed": dict(overhead)}
    if scheduling:
        obj["scheduling"] = dict(scheduling)
    return obj


def _not_found(name: str) -> HttpError:
    return HttpError(
        404,
        f'{QUALIFIED} "{name}" not found',
        reason="NotFound",
        details={"name": name, "group": GROUP, "kind": RESOURCE},
    )


def _pod_forbidden(pod_name: str, why: str) -> HttpError:
    # admission.NewForbidden -> apierrors.NewForbidden(pods, name, err).
    return HttpError(
        403,
        f'pods "{pod_name}" is forbidden: {why}',
        reason="Forbidden",
        details={"name": pod_name, "kind": "pods"},
    )


def _same_quantities(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Semantic equality of two resource lists ("1Gi" == "1024Mi")."""
    if set(left) != set(right):
        return False
    try:
        return all(parse_quantity(left[k]) == parse_quantity(right[k]) for k in left)
    except ValueError:
        return False


class RuntimeClasses:
    """The RuntimeClass objects of a fake, in its store (callers hold the lock)."""

    def __init__(self, store: Store, count: Callable[[str], None]) -> None:
        self.store = store
        self._count = count

    def add(
        self,
        name: str,
        handler: str,
        *,
        overhead: Mapping[str, str] | None = None,
        scheduling: Mapping[str, Any] | None = None,
    ) -> JSON:
        """Create or replace a RuntimeClass, as a cluster administrator does
        once the runtime is installed on the nodes. Not counted as a request."""
        obj = runtime_class_object(
            name, handler, time.time(), overhead=overhead, scheduling=scheduling
        )
        self._check(obj)
        previous = self.store.get(RESOURCE, "", name)
        if previous is not None:
            obj["metadata"]["uid"] = previous["metadata"]["uid"]
            obj["metadata"]["creationTimestamp"] = previous["metadata"]["creationTimestamp"]
        return self.store.put(RESOURCE, obj)

    # ------------------------------------------------------------ admission

    def admit_pod(self, pod: JSON) -> None:
        """RuntimeClass admission of a pod about to be created: refuse it
        (403) or apply its class's overhead and scheduling to ``pod`` in place."""
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return  # validation refuses it next
        pod_name = str((pod.get("metadata") or {}).get("name") or "")
        class_name = spec.get("runtimeClassName")
        runtime_class = None
        if class_name:
            runtime_class = self.store.get(RESOURCE, "", str(class_name))
            if runtime_class is None:
                raise _pod_forbidden(
                    pod_name, f'pod rejected: RuntimeClass "{class_name}" not found'
                )
        fixed = ((runtime_class or {}).get("overhead") or {}).get("podFixed")
        current = spec.get("overhead")
        if fixed:
            if current and not _same_quantities(fixed, current):
                raise _pod_forbidden(
                    pod_name,
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
                )
            spec["overhead"] = dict(fixed)
        elif current:
            raise _pod_forbidden(
                pod_name,
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined "
                "Overhead",
            )
        scheduling = (runtime_class or {}).get("scheduling") or {}
        self._merge_scheduling(pod_name, spec, scheduling)

    @staticmethod
    def _merge_scheduling(pod_name: str, spec: JSON, scheduling: JSON) -> None:
        selector = dict(spec.get("nodeSelector") or {})
        for key, value in (scheduling.get("nodeSelector") or {}).items():
            if key in selector and selector[key] != value:
                raise _pod_forbidden(
                    pod_name,
                    f"conflict: runtimeClass.scheduling.nodeSelector[{key}] = {value}; "
                    f"pod.spec.nodeSelector[{key}] = {selector[key]}",
                )
            selector[key] = value
        if selector:
            spec["nodeSelector"] = selector
        tolerations = list(spec.get("tolerations") or [])
        for toleration in scheduling.get("tolerations") or []:
            if toleration not in tolerations:
                tolerations.append(dict(toleration))
        if tolerations:
            spec["tolerations"] = tolerations

    # --------------------------------------------------------------- routes

    def routes(self, name: str, collection: Callable[[Request], Response]) -> list[Route]:
        """The REST routes of runtimeclasses and the group's discovery;
        ``collection`` serves list and watch (the fake's generic handler)."""
        group, path = re.escape(GROUP), re.escape(PATH)
        return [
            ("GET", rf"{path}/{RESOURCE}", RESOURCE, collection),
            ("GET", r"/apis/?", "apis", self._groups),
            ("GET", rf"/apis/{group}/?", "apis", self._group),
            ("GET", rf"{path}/?", "apis", self._resources),
            ("POST", rf"{path}/{RESOURCE}", RESOURCE, self._create),
            ("GET", rf"{path}/{RESOURCE}/{name}", "runtimeclass", self._get),
            ("DELETE", rf"{path}/{RESOURCE}/{name}", "runtimeclass", self._delete),
        ]

    def _check(self, obj: JSON) -> None:
        """422 Invalid as ValidateRuntimeClass (pkg/apis/node/validation):
        the name a DNS-1123 subdomain, the handler a DNS-1123 label."""
        name = str(obj["metadata"].get("name") or "")
        errors = (
            dns1123_subdomain_errors("metadata.name", name)
            if name
            else [FieldError("required", "metadata.name", "name or generateName is required")]
        )
        handler = obj.get("handler")
        if not isinstance(handler, str) or not handler:
            errors.append(FieldError("required", "handler"))
        else:
            errors.extend(dns1123_label_errors("handler", handler))
        for key, value in ((obj.get("overhead") or {}).get("podFixed") or {}).items():
            try:
                parse_quantity(value)
            except ValueError as exc:
                raise HttpError(
                    400, f'RuntimeClass in version "v1" cannot be handled as a RuntimeClass: {exc}'
                ) from exc
            if not isinstance(key, str) or not key:
                errors.append(FieldError("invalid", "overhead.podFixed", "", key))
        if errors:
            raise HttpError(
                422,
                invalid_status_message(f"{KIND}.{GROUP}", name, errors),
                reason="Invalid",
                details={
                    "name": name,
                    "group": GROUP,
                    "kind": KIND,
                    "causes": [e.cause() for e in errors],
                },
            )

    def _create(self, request: Request) -> Response:
        self._count(f"create {RESOURCE}")
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("metadata") or {}, dict):
            raise HttpError(400, "the body of the request was in an unknown format")
        if body.get("kind") not in (None, KIND):
            raise HttpError(400, f"the kind of the body ({body['kind']}) is not {KIND}")
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        handler, overhead = body.get("handler"), body.get("overhead") or {}
        scheduling = body.get("scheduling") or {}
        if not isinstance(handler, str | None) or not isinstance(overhead, dict):
            raise HttpError(400, f'{KIND} in version "v1" cannot be handled as a {KIND}')
        if not isinstance(scheduling, dict):
            raise HttpError(400, f'{KIND} in version "v1" cannot be handled as a {KIND}')
        obj = runtime_class_object(
            name,
            handler or "",
            time.time(),
            overhead=overhead.get("podFixed"),
            scheduling=scheduling,
            labels=meta.get("labels"),
        )
        self._check(obj)
        if self.store.get(RESOURCE, "", name) is not None:
            raise HttpError(
                409,
                f'{QUALIFIED} "{name}" already exists',
                reason="AlreadyExists",
                details={"name": name, "group": GROUP, "kind": RESOURCE},
            )
        if request.arg("dryRun") == "All":
            return Response(201, obj)
        return Response(201, self.store.put(RESOURCE, obj))

    def _get(self, request: Request) -> Response:
        self._count(f"get {RESOURCE}")
        name = request.params["name"]
        obj = self.store.get(RESOURCE, "", name)
        if obj is None:
            raise _not_found(name)
        return Response(200, obj)

    def _delete(self, request: Request) -> Response:
        self._count(f"delete {RESOURCE}")
        name = request.params["name"]
        obj = self.store.get(RESOURCE, "", name)
        if obj is None:
            raise _not_found(name)
        if request.arg("dryRun") != "All":
            self.store.remove(RESOURCE, "", name)
        # The generic registry answers a delete of a resource that does not
        # return the deleted object with a Success Status naming it
        # (k8s.io/apiserver/pkg/registry/generic/registry/store.go finalizeDelete).
        return Response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": GROUP,
                    "kind": RESOURCE,
                    "uid": obj["metadata"]["uid"],
                },
            },
        )

    # ------------------------------------------------------------ discovery

    def _groups(self, request: Request) -> Response:
        # APIGroupList (kubernetes/client/models/v1_api_group_list.py): the
        # groups served besides the core one at /api.
        return Response(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group()]})

    def _group(self, request: Request) -> Response:
        return Response(200, {"kind": "APIGroup", "apiVersion": "v1", **_group()})

    def _resources(self, request: Request) -> Response:
        # APIResourceList (v1_api_resource_list.py, v1_api_resource.py): the
        # verbs listed are those the fake serves.
        return Response(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": API_VERSION,
                "resources": [
                    {
                        "name": RESOURCE,
                        "singularName": "runtimeclass",
                        "namespaced": False,
                        "kind": KIND,
                        "verbs": ["create", "delete", "get", "list", "watch"],
                    }
                ],
            },
        )


def _group() -> JSON:
    version = {"groupVersion": API_VERSION, "version": "v1"}
    return {"name": GROUP, "versions": [version], "preferredVersion": dict(version)}
