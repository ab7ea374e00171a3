"""The Azure fake's state: resource groups, resources and long-running operations.

Resource ids and names are case-insensitive in ARM, so everything is keyed by the
lower-cased id while the first spelling is kept for rendering. Operations finish
lazily: :meth:`Store.advance` runs every operation whose deadline has passed and is
called before each request is handled, so no thread outlives the server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmkit.testing.fakes.azure.errors import ArmError

__all__ = [
    "DISK",
    "NIC",
    "NSG",
    "PIP",
    "SNAPSHOT",
    "VM",
    "VNET",
    "Group",
    "Operation",
    "Resource",
    "ResourceRef",
    "Store",
    "iso",
    "parse_id",
    "ref_id",
]

Json = dict[str, Any]

VM = "Microsoft.Compute/virtualMachines"
DISK = "Microsoft.Compute/disks"
SNAPSHOT = "Microsoft.Compute/snapshots"
NSG = "Microsoft.Network/networkSecurityGroups"
PIP = "Microsoft.Network/publicIPAddresses"
VNET = "Microsoft.Network/virtualNetworks"
NIC = "Microsoft.Network/networkInterfaces"


def iso(ts: float) -> str:
    """An ARM timestamp (ISO 8601, UTC offset spelled out)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def ref_id(obj: Any) -> str | None:
    """The ``id`` of a ``{"id": ...}`` sub-resource reference."""
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
        return str(obj["id"])
    return None


def norm_location(location: str) -> str:
    """ARM's canonical location name: "East US" and "eastus" are the same region."""
    return location.replace(" ", "").lower()


@dataclass
class Group:
    """A resource group."""

    subscription: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)
    deleting: bool = False

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.name}"


@dataclass
class Resource:
    """A top-level ARM resource. ``state`` holds what the fake tracks but never renders."""

    subscription: str
    group: str
    provider_type: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)
    properties: Json = field(default_factory=dict)
    top: Json = field(default_factory=dict)
    state: Json = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"
            f"/providers/{self.provider_type}/{self.name}"
        )

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(frozen=True)
class ResourceRef:
    """The parts of a resource id; ``child_*`` for e.g. ``.../virtualNetworks/v/subnets/s``."""

    subscription: str
    group: str
    provider_type: str
    name: str
    child_type: str | None = None
    child_name: str | None = None

    @property
    def parent_key(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourcegroups/{self.group}"
            f"/providers/{self.provider_type}/{self.name}"
        ).lower()


def parse_id(resource_id: str) -> ResourceRef | None:
    """Split an ARM resource id; None when it is not one."""
    parts = resource_id.strip("/").split("/")
    if len(parts) not in (8, 10) or any(not p for p in parts):
        return None
    if [parts[0].lower(), parts[2].lower(), parts[4].lower()] != [
        "subscriptions",
        "resourcegroups",
        "providers",
    ]:
        return None
    child = (parts[8], parts[9]) if len(parts) == 10 else (None, None)
    return ResourceRef(parts[1], parts[3], f"{parts[5]}/{parts[6]}", parts[7], *child)


@dataclass
class Operation:
    """An ARM asynchronous operation; ``finish`` applies its effect and may return an error."""

    id: str
    namespace: str
    location: str
    subscription: str
    started: float
    done_at: float
    finish: Callable[[], ArmError | None] | None = None
    status: str = "InProgress"
    error: ArmError | None = None
    ended: float | None = None

    def body(self) -> Json:
        """The operation status resource: ``status`` InProgress | Succeeded | Failed
        (learn.microsoft.com/azure/azure-resource-manager/management/async-operations)."""
        out: Json = {"name": self.id, "status": self.status, "startTime": iso(self.started)}
        if self.ended is not None:
            out["endTime"] = iso(self.ended)
        if self.error is not None:
            out["error"] = self.error.body()
        return out


class Store:
    """All the fake's state. Not thread-safe by itself: the server holds its lock."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.resources: dict[str, Resource] = {}
        self.operations: dict[str, Operation] = {}

    # ------------------------------------------------------------------ groups

    @staticmethod
    def _group_key(subscription: str, name: str) -> str:
        return f"{subscription}/{name}".lower()

    def group(self, subscription: str, name: str) -> Group | None:
        return self.groups.get(self._group_key(subscription, name))

    def add_group(self, group: Group) -> None:
        self.groups[self._group_key(group.subscription, group.name)] = group

    def remove_group(self, group: Group) -> None:
        self.groups.pop(self._group_key(group.subscription, group.name), None)

    # --------------------------------------------------------------- resources

    def get(self, resource_id: str) -> Resource | None:
        return self.resources.get(resource_id.lower())

    def find(self, subscription: str, group: str, provider_type: str, name: str) -> Resource | None:
        return self.resources.get(
            f"/subscriptions/{subscription}/resourcegroups/{group}"
            f"/providers/{provider_type}/{name}".lower()
        )

    def add(self, resource: Resource) -> None:
        self.resources[resource.key] = resource

    def remove(self, resource: Resource) -> None:
        self.resources.pop(resource.key, None)

    def of_type(
        self, provider_type: str, subscription: str | None = None, group: str | None = None
    ) -> list[Resource]:
        """Resources of one type, oldest first, optionally within a subscription/group."""
        wanted = provider_type.lower()
        found = [
            r
            for r in self.resources.values()
            if r.provider_type.lower() == wanted
            and (subscription is None or r.subscription.lower() == subscription.lower())
            and (group is None or r.group.lower() == group.lower())
        ]
        return sorted(found, key=lambda r: r.created)

    # -------------------------------------------------------------- operations

    def start(
        self,
        namespace: str,
        location: str,
        subscription: str,
        delay: float,
        finish: Callable[[], ArmError | None] | None,
    ) -> Operation:
        """Register an operation that finishes ``delay`` seconds from now."""
        now = time.time()
        op = Operation(
            id=str(uuid.uuid4()),
            namespace=namespace,
            location=norm_location(location),
            subscription=subscription,
            started=now,
            done_at=now + delay,
            finish=finish,
        )
        self.operations[op.id] = op
        return op

    def advance(self, now: float) -> None:
        """Finish, in deadline order, every operation whose deadline has passed."""
        due = sorted(
            (
                op
                for op in self.operations.values()
                if op.status == "InProgress" and op.done_at <= now
            ),
            key=lambda op: op.done_at,
        )
        for op in due:
            error = op.finish() if op.finish is not None else None
            op.error = error
            op.status = "Failed" if error is not None else "Succeeded"
            op.ended = now
