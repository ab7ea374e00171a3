"""Machine and Snapshot: immutable records of what a provider manages."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from vmkit.provider import Provider

__all__ = ["Machine", "MachineKind", "MachineState", "Orphan", "Snapshot"]

MachineKind = Literal["vm", "container"]


class MachineState(enum.StrEnum):
    """Provider-neutral lifecycle state of a machine."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"
    UNKNOWN = "unknown"


def _unbound() -> Provider:
    raise AttributeError("this record is not bound to a provider")


@dataclass(frozen=True, kw_only=True)
class Machine:
    """An immutable snapshot of one managed machine (a VM or a container).

    The methods act through the provider that returned the record and return
    a fresh ``Machine``; the record itself never changes. ``raw`` is the
    provider's own record, for fields vmkit does not model.
    """

    id: str
    name: str
    provider: str
    kind: MachineKind
    workload: str
    replica: int | None
    state: MachineState
    size: str | None = None
    image: str | None = None
    location: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    spec_hash: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _owner: Provider | None = field(default=None, repr=False, compare=False)

    @property
    def owner(self) -> Provider:
        """The provider this record came from; AttributeError when unbound."""
        return self._owner if self._owner is not None else _unbound()

    def bind(self, owner: Provider) -> Machine:
        """Return a copy bound to ``owner`` (used by providers)."""
        return replace(self, _owner=owner)

    def refresh(self) -> Machine:
        """Read the machine again. Raises NotFound when it is gone."""
        return self.owner.get(self.id)

    def start(self) -> Machine:
        """See Provider.start."""
        return self.owner.start(self.id)

    def stop(self) -> Machine:
        """See Provider.stop."""
        return self.owner.stop(self.id)

    def reboot(self) -> Machine:
        """See Provider.reboot."""
        return self.owner.reboot(self.id)

    def snapshot(self, name: str) -> Snapshot:
        """See Provider.snapshot."""
        return self.owner.snapshot(self.id, name)

    def restore(self, snapshot: Snapshot) -> Machine:
        """See Provider.restore."""
        return self.owner.restore(self.id, snapshot)

    def logs(self) -> str:
        """See Provider.logs."""
        return self.owner.logs(self.id)

    def delete(self) -> None:
        """See Provider.delete."""
        self.owner.delete(self.id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the public fields (``raw`` left out)."""
        return {
            "id": self.id,
            "name": self.name,
            "provider": self.provider,
            "kind": self.kind,
            "workload": self.workload,
            "replica": self.replica,
            "state": self.state.value,
            "size": self.size,
            "image": self.image,
            "location": self.location,
            "private_ip": self.private_ip,
            "public_ip": self.public_ip,
            "labels": dict(self.labels),
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """A point-in-time copy of a machine's boot disk, owned by a workload.

    ``machine_id`` (also ``machine``) is the id of the machine it copies and
    ``replica`` that machine's replica index, read from the snapshot's tags;
    ``size`` is the copied disk's size in GiB. ``None`` where the cloud does
    not say.
    """

    id: str
    name: str
    provider: str
    workload: str
    machine_id: str | None
    state: str
    created_at: datetime | None = None
    size: int | None = None
    replica: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _owner: Provider | None = field(default=None, repr=False, compare=False)

    @property
    def owner(self) -> Provider:
        """The provider this record came from; AttributeError when unbound."""
        return self._owner if self._owner is not None else _unbound()

    @property
    def machine(self) -> str | None:
        """The id of the machine whose boot disk this copies (``machine_id``)."""
        return self.machine_id

    def bind(self, owner: Provider) -> Snapshot:
        """Return a copy bound to ``owner`` (used by providers)."""
        return replace(self, _owner=owner)

    def delete(self) -> None:
        """See Provider.delete_snapshot."""
        self.owner.delete_snapshot(self.id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the public fields (``raw`` left out)."""
        return {
            "id": self.id,
            "name": self.name,
            "provider": self.provider,
            "workload": self.workload,
            "machine_id": self.machine_id,
            "replica": self.replica,
            "state": self.state,
            "size": self.size,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, kw_only=True)
class Orphan:
    """A resource carrying vmkit's tags that no live machine owns.

    Found by :meth:`vmkit.Provider.gc`: what a crashed process or an
    interrupted delete left behind, still billed. ``kind`` names the resource
    type in the provider's own words (``"security-group"``, ``"nic"``,
    ``"public-ip"``, ``"disk"``, ``"firewall"``, ``"key-pair"``,
    ``"instance"``...), ``reason`` says why it counts as an orphan.
    """

    kind: str
    id: str
    name: str
    provider: str
    workload: str | None
    reason: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the public fields (``raw`` left out)."""
        return {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "provider": self.provider,
            "workload": self.workload,
            "reason": self.reason,
        }
