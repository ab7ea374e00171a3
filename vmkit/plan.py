"""Plans: the per-replica actions a deploy takes and the requests it sends.

:func:`converge` is the one diff of desired replicas against the machines the
cloud's tags say exist; every backend's deploy goes through it (see
:class:`vmkit.provider.Provider`). These names are re-exported by
``vmkit.provider``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vmkit.machine import Machine, MachineState
from vmkit.spec import Workload

__all__ = ["Action", "ActionKind", "CreateRequest", "Plan", "converge"]

ActionKind = Literal["create", "keep", "replace", "delete"]


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


def _preference(machine: Machine) -> tuple[int, int, str]:
    state_rank = {MachineState.RUNNING: 0, MachineState.PENDING: 1, MachineState.STOPPED: 2}
    return (state_rank.get(machine.state, 3), 0, machine.id)


def converge(workload: Workload, existing: Iterable[Machine]) -> tuple[Action, ...]:
    """Diff the desired replicas against the machines the tags say exist.

    Replica ``i < replicas`` with a machine of the same spec hash is kept
    (stopped machines too: a deploy does not undo a deliberate stop); one of
    another hash is replaced; a missing one is created. Replicas at or above
    ``replicas``, duplicates of a replica, and machines with no replica tag
    (a create interrupted before it was tagged) are deleted. Machines already
    being deleted are ignored.
    """
    by_replica: dict[int, list[Machine]] = {}
    actions: list[Action] = []
    for machine in existing:
        if machine.state in (MachineState.DELETED, MachineState.DELETING):
            continue
        if machine.replica is None:
            actions.append(Action("delete", -1, machine, "no replica tag"))
            continue
        by_replica.setdefault(machine.replica, []).append(machine)
    for replica in range(workload.replicas):
        found = sorted(by_replica.pop(replica, []), key=_preference)
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
