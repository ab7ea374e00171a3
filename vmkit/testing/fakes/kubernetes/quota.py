"""ResourceQuota (core/v1): the object, its REST routes and the admission check.

Shape: https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/resource-quota-v1/
(``spec.hard``, ``status.hard``, ``status.used``). Semantics: "Resource Quotas",
https://kubernetes.io/docs/concepts/policy/resource-quotas/ -- a create that
would pass a quota's hard limit is refused with 403 Forbidden naming the
constraint.

What the fake enforces is the object count of pods (``pods`` and its
``count/pods`` spelling); other keys of ``spec.hard`` (cpu, memory...) are
stored and echoed but not enforced. Usage is computed from the pods
themselves at each admission, as if the quota controller's replenishment were
instant, and ``status.used`` follows it on every read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.kubernetes.shapes import (
    JSON,
    FieldError,
    dns1123_subdomain_errors,
    format_time,
    invalid_status_message,
    parse_quantity,
)
from vmkit.testing.fakes.kubernetes.store import Store

__all__ = ["POD_COUNTS", "Quotas", "counts_against_quota"]

#: The hard-limit keys that count pods (object count quota: "pods" and
#: the generic "count/<resource>.<group>" form, "count/pods" for core).
POD_COUNTS = ("pods", "count/pods")

Route = tuple[str, str, str, Callable[[Request], Response]]


def counts_against_quota(pod: JSON, now: float) -> bool:
    """Whether a pod is charged to its namespace's quota right now.

    As QuotaV1Pod (pkg/quota/v1/evaluator/core/pods.go): a pod in a terminal
    phase (Succeeded, Failed) is not, nor one stuck terminating past its
    deletion timestamp plus its grace period.
    """
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    stamp, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if stamp and grace is not None:
        deleted = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return now <= deleted.replace(tzinfo=deleted.tzinfo or UTC).timestamp() + float(grace)
    return True


class Quotas:
    """The ResourceQuota objects of a fake, in its store (callers hold the lock)."""

    def __init__(self, store: Store, count: Callable[[str], None]) -> None:
        self.store = store
        self._count = count

    # ------------------------------------------------------------ admission

    def pods_in_use(self, namespace: str, now: float) -> int:
        return sum(counts_against_quota(p, now) for p in self.store.items("pods", namespace))

    def admit_pod(self, namespace: str, name: str, now: float) -> None:
        """Refuse a new pod that would pass a ``pods`` hard limit: 403 Forbidden
        as the ResourceQuota admission plugin answers it
        (k8s.io/apiserver/pkg/admission/plugin/resourcequota/controller.go:
        "exceeded quota: %s, requested: %s, used: %s, limited: %s", wrapped by
        admission.NewForbidden as ``pods "<name>" is forbidden: ...``)."""
        used: int | None = None
        for quota in self.store.items("resourcequotas", namespace):
            hard = (quota.get("spec") or {}).get("hard") or {}
            for key in POD_COUNTS:
                if key not in hard:
                    continue
                if used is None:
                    used = self.pods_in_use(namespace, now)
                limit = parse_quantity(hard[key])
                if used + 1 > limit:
                    quota_name = quota["metadata"]["name"]
                    raise HttpError(
                        403,
                        f'pods "{name}" is forbidden: exceeded quota: {quota_name}, '
                        f"requested: {key}=1, used: {key}={used}, limited: {key}={hard[key]}",
                        reason="Forbidden",
                        details={"name": name, "kind": "pods"},
                    )

    def refresh(self, now: float) -> None:
        """Bring each quota's ``status`` up to date (the quota controller's
        job); writes only the quotas whose usage changed."""
        for quota in self.store.items("resourcequotas"):
            status = self._status(quota, now)
            if quota.get("status") != status:
                quota["status"] = status
                self.store.put("resourcequotas", quota)

    def _status(self, quota: JSON, now: float) -> JSON:
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        namespace = quota["metadata"]["namespace"]
        used: dict[str, str] = {}
        for key in hard:
            if key in POD_COUNTS:
                used[key] = str(self.pods_in_use(namespace, now))
            else:
                used[key] = "0"
        return {"hard": hard, "used": used}

    # --------------------------------------------------------------- routes

    def routes(self, ns: str, name: str) -> list[Route]:
        """The REST routes of resourcequotas (list/watch go through the
        fake's generic collection handler)."""
        return [
            ("POST", rf"{ns}/resourcequotas", "resourcequotas", self._create),
            ("GET", rf"{ns}/resourcequotas/{name}", "resourcequota", self._get),
            ("PUT", rf"{ns}/resourcequotas/{name}", "resourcequota", self._replace),
            ("DELETE", rf"{ns}/resourcequotas/{name}", "resourcequota", self._delete),
        ]

    def _body(self, request: Request, namespace: str) -> JSON:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("metadata") or {}, dict):
            raise HttpError(400, "the body of the request was in an unknown format")
        if body.get("kind") not in (None, "ResourceQuota"):
            raise HttpError(400, f"the kind of the body ({body['kind']}) is not ResourceQuota")
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise HttpError(
                400,
                "the namespace of the provided object does not match the namespace sent "
                "on the request",
            )
        name = str(meta.get("name") or "")
        errors = (
            dns1123_subdomain_errors("metadata.name", name)
            if name
            else [FieldError("required", "metadata.name", "name or generateName is required")]
        )
        hard = (body.get("spec") or {}).get("hard") or {}
        if not isinstance(hard, dict):
            raise HttpError(400, "spec.hard must be a map of quantities")
        for key, value in hard.items():
            try:
                quantity = parse_quantity(value)
            except ValueError as exc:
                raise HttpError(
                    400, f'ResourceQuota in version "v1" cannot be handled: {exc}'
                ) from exc
            if quantity < Decimal(0):
                errors.append(
                    FieldError(
                        "invalid", f"spec.hard[{key}]", "must be greater than or equal to 0", value
                    )
                )
        if errors:
            raise HttpError(
                422,
                invalid_status_message("ResourceQuota", name, errors),
                reason="Invalid",
                details={
                    "name": name,
                    "kind": "ResourceQuota",
                    "causes": [e.cause() for e in errors],
                },
            )
        return body

    def _stored(self, body: JSON, namespace: str, now: float, previous: JSON | None) -> JSON:
        meta = body["metadata"]
        quota: JSON = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": meta["name"],
                "namespace": namespace,
                "uid": previous["metadata"]["uid"] if previous else str(uuid.uuid4()),
                "creationTimestamp": (
                    previous["metadata"]["creationTimestamp"] if previous else format_time(now)
                ),
                "labels": dict(meta.get("labels") or {}),
            },
            "spec": {"hard": dict((body.get("spec") or {}).get("hard") or {})},
        }
        quota["status"] = self._status(quota, now)
        return self.store.put("resourcequotas", quota)

    def _create(self, request: Request) -> Response:
        self._count("create resourcequotas")
        namespace = request.params["ns"]
        body = self._body(request, namespace)
        name = body["metadata"]["name"]
        if self.store.get("resourcequotas", namespace, name) is not None:
            raise HttpError(
                409,
                f'resourcequotas "{name}" already exists',
                reason="AlreadyExists",
                details={"name": name, "kind": "resourcequotas"},
            )
        return Response(201, self._stored(body, namespace, time.time(), None))

    def _get(self, request: Request) -> Response:
        self._count("get resourcequotas")
        return Response(200, self._existing(request))

    def _replace(self, request: Request) -> Response:
        self._count("update resourcequotas")
        namespace, name = request.params["ns"], request.params["name"]
        current = self._existing(request)
        body = self._body(request, namespace)
        if body["metadata"]["name"] != name:
            raise HttpError(400, "the name of the object does not match the name on the URL")
        version = body["metadata"].get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            # Optimistic concurrency: an update from a stale read is a 409 Conflict.
            raise HttpError(
                409,
                f'Operation cannot be fulfilled on resourcequotas "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                reason="Conflict",
                details={"name": name, "kind": "resourcequotas"},
            )
        return Response(200, self._stored(body, namespace, time.time(), current))

    def _delete(self, request: Request) -> Response:
        self._count("delete resourcequotas")
        current = self._existing(request)
        meta = current["metadata"]
        final = self.store.remove("resourcequotas", meta["namespace"], meta["name"])
        return Response(200, final)

    def _existing(self, request: Request) -> JSON:
        namespace, name = request.params["ns"], request.params["name"]
        quota = self.store.get("resourcequotas", namespace, name)
        if quota is None:
            raise HttpError(
                404,
                f'resourcequotas "{name}" not found',
                reason="NotFound",
                details={"name": name, "kind": "resourcequotas"},
            )
        return quota
