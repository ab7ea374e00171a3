"""Management locks of the Azure fake (Microsoft.Authorization/locks).

A lock on a scope (a subscription, a resource group or a resource) applies to
everything under it: ``CanNotDelete`` refuses deletes, ``ReadOnly`` also refuses
writes and actions, each with 409 ScopeLocked before the resource provider sees the
request (learn.microsoft.com/azure/azure-resource-manager/management/lock-resources).
Routes and shapes: "Management Locks - Create Or Update By Scope", api-version
2016-09-01 (learn.microsoft.com/rest/api/resources/management-locks), the
ManagementLockObject model of azure-mgmt-resource (``locks/models``).
"""

from __future__ import annotations

from vmkit.testing.fakes._http import Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.core import ArmCore, Json
from vmkit.testing.fakes.azure.errors import ArmError

__all__ = ["LockApi"]

LOCK_TYPE = "Microsoft.Authorization/locks"
LEVELS = ("CanNotDelete", "ReadOnly")
# A scope is the subscription, a resource group, or a top-level resource.
_SCOPE = (
    r"(?P<scope>/subscriptions/[^/]+(?:/resourceGroups/[^/]+"
    r"(?:/providers/[^/]+/[^/]+/[^/]+)?)?)"
)
_LOCKS = _SCOPE + r"/providers/Microsoft\.Authorization/locks"
_WRITES = frozenset({"PUT", "PATCH", "POST"})


class LockApi(ArmCore):
    """Management locks and the check every request passes."""

    def _register_locks(self) -> None:
        #: lower-cased scope -> {lower-cased lock name: lock as rendered}
        self.locks: dict[str, dict[str, Json]] = {}
        item = _LOCKS + r"/(?P<lock>[^/]+)"
        self.arm_route("PUT", item, "locks", self._lock_put)
        self.arm_route("GET", item, "locks", self._lock_get)
        self.arm_route("DELETE", item, "locks", self._lock_delete)
        self.arm_route("GET", _LOCKS, "locks.list", self._lock_list)

    def authorize(self, request: Request) -> None:
        """ARM's front door: the token first, then the locks on the target's scopes."""
        super().authorize(request)
        if "/providers/microsoft.authorization/locks" in request.path.lower():
            return
        level = "ReadOnly" if request.method in _WRITES else None
        if request.method != "DELETE" and level is None:
            return
        target = request.path.rstrip("/").lower()
        for scope, locks in self.locks.items():
            if target != scope and not target.startswith(scope + "/"):
                continue
            for lock in locks.values():
                if request.method == "DELETE" or lock["properties"]["level"] == level:
                    verb = "delete" if request.method == "DELETE" else "write"
                    locked = lock["id"].rsplit(f"/providers/{LOCK_TYPE}/", 1)[0]
                    raise errors.scope_locked(request.path, locked, verb)

    # ---------------------------------------------------------------- routes

    def _lock_put(self, request: Request) -> Response:
        body = self.body_of(request)
        props = body.get("properties") or {}
        level = str(props.get("level") or "")
        if level not in LEVELS:
            raise ArmError(
                400,
                "InvalidLockLevel",
                f"The lock level '{level}' is not valid. Valid values: {', '.join(LEVELS)}.",
            )
        scope, name = request.params["scope"], request.params["lock"]
        self._check_scope(scope)
        held = self.locks.setdefault(scope.lower(), {})
        created = name.lower() not in held
        lock: Json = {
            "id": f"{scope}/providers/{LOCK_TYPE}/{name}",
            "name": name,
            "type": LOCK_TYPE,
            "properties": {"level": level, "notes": str(props.get("notes") or "")},
        }
        held[name.lower()] = lock
        return Response(201 if created else 200, lock)

    def _lock_get(self, request: Request) -> Response:
        lock = self.locks.get(request.params["scope"].lower(), {}).get(
            request.params["lock"].lower()
        )
        if lock is None:
            raise ArmError(404, "LockNotFound", "The lock could not be found.")
        return Response(200, lock)

    def _lock_delete(self, request: Request) -> Response:
        held = self.locks.get(request.params["scope"].lower(), {})
        if held.pop(request.params["lock"].lower(), None) is None:
            return Response(204, None)
        return Response(200, None)

    def _lock_list(self, request: Request) -> Response:
        scope = request.params["scope"].lower()
        found = [
            lock
            for where, held in self.locks.items()
            if scope == where or scope.startswith(where + "/")
            for lock in held.values()
        ]
        return self.page(request, found)

    def _check_scope(self, scope: str) -> None:
        """A lock goes on something that exists."""
        parts = scope.strip("/").split("/")
        if len(parts) >= 4:
            self.group_for_read(parts[1], parts[3])
        if len(parts) == 8 and self.store.get(scope) is None:
            raise errors.resource_not_found(f"{parts[5]}/{parts[6]}", parts[7], parts[3])

    # -------------------------------------------------------- test controls

    def add_lock(
        self, resource_id: str, name: str = "vmkit-test", level: str = "CanNotDelete"
    ) -> None:
        """Put a management lock on ``resource_id`` (a resource, group or subscription),
        as ``PUT .../providers/Microsoft.Authorization/locks/{name}`` would."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}")
        with self.lock:
            scope = resource_id.rstrip("/")
            self.locks.setdefault(scope.lower(), {})[name.lower()] = {
                "id": f"{scope}/providers/{LOCK_TYPE}/{name}",
                "name": name,
                "type": LOCK_TYPE,
                "properties": {"level": level, "notes": ""},
            }

    def remove_lock(self, resource_id: str, name: str = "vmkit-test") -> None:
        """Remove the lock ``name`` from ``resource_id``; absent is fine."""
        with self.lock:
            self.locks.get(resource_id.rstrip("/").lower(), {}).pop(name.lower(), None)
