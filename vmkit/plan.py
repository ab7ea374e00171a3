"""Plans: the per-replica actions a deploy takes and the requests it sends.

:func:`converge` is the one diff of desired replicas against the machines the
cloud's tags say exist; every backend's deploy goes through it (see
:class:`vmkit.provider.Provider`). These names are re-exported by
``vmkit.provider``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from vmkit._settle import survivor_key
from vmkit.errors import ProviderError
from vmkit.machine import Machine, MachineState
from vmkit.spec import Workload

__all__ = [
    "ISOLATION_TAG",
    "MANAGED_BY",
    "REPLICA_TAG",
    "SPEC_TAG",
    "WORKLOAD_TAG",
    "Action",
    "ActionKind",
    "CreateRequest",
    "PartialCreate",
    "Plan",
    "converge",
    "in_flight",
    "ownership_labels",
    "recent",
]

ActionKind = Literal["create", "keep", "replace", "delete"]

#: How long a machine with the workload's tag but no replica yet is taken as
#: a create still in flight (another deploy is tagging it) rather than debris.
IN_FLIGHT = timedelta(minutes=10)

#: The tags/labels that say vmkit owns a resource; the cloud is the source of truth.
WORKLOAD_TAG = "vmkit-workload"
REPLICA_TAG = "vmkit-replica"
SPEC_TAG = "vmkit-spec"
#: Set when a workload asks for more than container isolation ("sandbox", "vm"):
#: a VM already gives both, so VM backends only record the request.
ISOLATION_TAG = "vmkit-isolation"
MANAGED_BY = ("app.kubernetes.io/managed-by", "vmkit")


def ownership_labels(workload: Workload, replica: int | None = None) -> dict[str, str]:
    """The user's labels plus vmkit's ownership tags (replica when given).

    vmkit's own keys come last, so a user label can never shadow them (the
    spec refuses the ``vmkit-`` prefix anyway).
    """
    labels = dict(workload.labels)
    labels[WORKLOAD_TAG] = workload.name
    labels[SPEC_TAG] = workload.spec_hash
    if workload.isolation != "container":
        labels[ISOLATION_TAG] = workload.isolation
    if replica is not None:
        labels[REPLICA_TAG] = str(replica)
    return labels


@dataclass(frozen=True)
class Action:
    """One step of a plan, for one replica."""

    kind: ActionKind
    replica: int
    machine: Machine | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.kind,
            "replica": self.replica,
            "machine": self.machine.id if self.machine else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class CreateRequest:
    """The exact request a deploy sends to create ``replicas`` (one API call).

    ``operation`` names the API call (``"ec2:RunInstances"``), ``body`` is its
    parameters, idempotency key included. ``context`` carries what the backend
    resolved while planning and needs again after the call (not sent).
    """

    operation: str
    replicas: tuple[int, ...]
    body: Mapping[str, Any]
    context: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "replicas": list(self.replicas), "body": self.body}


@dataclass(frozen=True)
class Plan:
    """What ``deploy`` would do: per-replica actions and the create requests."""

    provider: str
    workload: Workload
    actions: tuple[Action, ...]
    requests: tuple[CreateRequest, ...]

    def of(self, *kinds: ActionKind) -> list[Action]:
        """The actions of the given kinds, by replica."""
        return [a for a in self.actions if a.kind in kinds]

    @property
    def changes(self) -> bool:
        """True when deploy would create, replace or delete something."""
        return any(a.kind != "keep" for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "workload": self.workload.name,
            "spec_hash": self.workload.spec_hash,
            "actions": [a.to_dict() for a in self.actions],
            "requests": [r.to_dict() for r in self.requests],
        }


class PartialCreate(Exception):
    """Raised by a backend's ``_create`` when the cloud made only some of a
    request's replicas (EC2 ``MinCount`` below ``MaxCount``, a bulkInsert
    with ``minCount``): ``machines`` are the ones made (with their replica
    set), ``error`` why the others were refused; the deploy reports it for
    each of them. The backend deletes whatever it made for those others."""

    def __init__(self, machines: Sequence[Machine], error: ProviderError) -> None:
        self.machines = list(machines)
        self.error = error
        super().__init__(str(error))


def converge(
    workload: Workload, existing: Iterable[Machine], *, now: datetime | None = None
) -> tuple[Action, ...]:
    """Diff the desired replicas against the machines the tags say exist.

    Replica ``i < replicas`` with a machine of the same spec hash is kept
    (stopped machines too: a deploy does not undo a deliberate stop); one of
    another hash is replaced; a failed one is replaced; a missing one is
    created. Replicas at or above ``replicas`` and duplicates of a replica
    are deleted; of duplicates, the one kept is of the current spec, not
    failed, then the oldest (the survivor a racing deploy keeps too, see
    :mod:`vmkit._settle`). A machine with no replica tag is a create another
    deploy is still tagging when younger than ``IN_FLIGHT`` (left alone),
    else debris of an interrupted create (deleted). Machines already being
    deleted are ignored.
    """
    now = now or datetime.now(UTC)
    by_replica: dict[int, list[Machine]] = {}
    actions: list[Action] = []
    for machine in existing:
        if machine.state in (MachineState.DELETED, MachineState.DELETING):
            continue
        if machine.replica is None:
            if not in_flight(machine, now):
                actions.append(Action("delete", -1, machine, "no replica tag"))
            continue
        by_replica.setdefault(machine.replica, []).append(machine)

    def preference(machine: Machine) -> tuple[bool, bool, tuple[bool, datetime, str]]:
        stale = machine.spec_hash != workload.spec_hash
        return (machine.state == MachineState.FAILED, stale, survivor_key(machine))

    for replica in range(workload.replicas):
        found = sorted(by_replica.pop(replica, []), key=preference)
        if not found:
            actions.append(Action("create", replica, None, "missing"))
            continue
        best, *duplicates = found
        if best.spec_hash == workload.spec_hash and best.state != MachineState.FAILED:
            actions.append(Action("keep", replica, best, "up to date"))
        elif best.state == MachineState.FAILED:
            actions.append(Action("replace", replica, best, "failed"))
        else:
            actions.append(Action("replace", replica, best, "spec changed"))
        actions.extend(Action("delete", replica, d, "duplicate") for d in duplicates)
    for replica, machines in by_replica.items():
        actions.extend(Action("delete", replica, m, "surplus") for m in machines)
    return tuple(sorted(actions, key=lambda a: (a.replica, a.kind)))


def in_flight(machine: Machine, now: datetime) -> bool:
    """A machine without a replica tag that another deploy is still tagging:
    starting or running, and made less than ``IN_FLIGHT`` ago."""
    if machine.state not in (MachineState.PENDING, MachineState.RUNNING):
        return False
    return recent(machine.created_at, now)


def recent(created: object, now: datetime) -> bool:
    """``created`` (a datetime, or an ISO 8601 string as ARM sends it) is
    less than ``IN_FLIGHT`` before ``now``; an unknown time is not recent.
    A time without a zone is taken as UTC."""
    if isinstance(created, str):
        try:
            created = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return False
    if not isinstance(created, datetime):
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return now - created < IN_FLIGHT
