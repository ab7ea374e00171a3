"""Waiting for machines to settle, and the error a deploy raises when some fail.

:class:`Tracker` is the bookkeeping of one wait, kept apart from any I/O: the
provider feeds it each listing of the workload (a poll round, or the view a
watch maintains) and it says which machines are settled, pending or failed.

For a deploy it also resolves **duplicates**: two deploys of the same
workload racing each other can both create replica *i*. Every deploy that
sees two live machines of one replica and spec keeps the same one, the
*survivor* (the oldest, then the smallest id: both are immutable, so every
observer picks the same machine whatever it saw before) and deletes the
others; a deploy whose own machine lost adopts the survivor. The fleet ends
with exactly one machine per replica, whichever deploy made it.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vmkit.errors import DeployTimeout, ProviderError
from vmkit.machine import Machine, MachineState

__all__ = [
    "Outcome",
    "Tracker",
    "attempt",
    "by_replica",
    "deploy_error",
    "remove",
    "roll_back",
    "survivor_key",
    "wait_gone",
]

if TYPE_CHECKING:
    from vmkit.provider import Provider
    from vmkit.spec import Workload

log = logging.getLogger("vmkit.provider")
GONE = frozenset({MachineState.DELETED})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def survivor_key(machine: Machine) -> tuple[bool, datetime, str]:
    """Order duplicates of one replica: the first one survives.

    Only immutable fields count (creation time, then id), so deploys that
    observe the race at different moments still agree on the survivor.
    """
    created = machine.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (created is None, created or _EPOCH, machine.id)


@dataclass
class Outcome:
    """Where a wait ended. ``machines`` holds the latest record of each
    machine waited on (for a deploy: one per replica, survivors adopted)."""

    machines: list[Machine]
    failed: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)


class Tracker:
    """The state of one wait for ``machines`` to reach one of ``targets``.

    ``dedupe`` (deploys only) tracks replicas rather than ids and resolves
    duplicates of ``spec_hash`` as the module says, calling ``delete`` for
    the machines that lose. ``consistent`` says that a listing always shows
    a machine that exists (a Kubernetes list), so a machine absent from it
    has vanished; otherwise an absent machine that was never listed is taken
    as not listed yet (eventual consistency) and counts as pending.
    """

    def __init__(
        self,
        machines: Sequence[Machine],
        targets: Iterable[MachineState],
        *,
        failure_reason: Callable[[Machine], str],
        dedupe: bool = False,
        spec_hash: str | None = None,
        delete: Callable[[Sequence[Machine]], None] | None = None,
        consistent: bool = False,
        fail_fast: bool = False,
    ) -> None:
        #: Stop following at the first failure (not for deploys, which await
        #: the healthy replicas before raising).
        self.fail_fast = fail_fast
        self.targets = frozenset(targets)
        self.want_gone = bool(self.targets & GONE)
        self.dedupe = dedupe
        self.spec_hash = spec_hash
        self._delete = delete
        self._reason = failure_reason
        self._consistent = consistent
        self.tracked: dict[object, Machine] = {self._key(m): m for m in machines}
        self.failed: dict[object, str] = {}
        self.seen: set[str] = set()
        self.removed: set[str] = set()
        self.listed: dict[str, Machine] = {}

    def _key(self, machine: Machine) -> object:
        if self.dedupe and machine.replica is not None:
            return machine.replica
        return machine.id

    def observe(self, listing: Iterable[Machine]) -> bool:
        """Take one listing of the workload; True once nothing is pending."""
        self.listed = {m.id: m for m in listing}
        if self.dedupe:
            self._resolve_duplicates()
        for key, machine in self.tracked.items():
            if key in self.failed:
                continue
            current = self.listed.get(machine.id)
            if current is None:
                if self.want_gone:
                    continue
                if machine.id in self.seen or self._consistent:
                    self.failed[key] = "deleted while starting"
                continue
            self.seen.add(current.id)
            self.tracked[key] = current
            if self.want_gone:
                continue
            if current.state in GONE:
                self.failed[key] = "deleted while starting"
            elif current.state == MachineState.DELETING and current.state not in self.targets:
                self.failed[key] = "being deleted"
            elif current.state == MachineState.FAILED and current.state not in self.targets:
                self.failed[key] = self._reason(current)
        return not self.pending()

    def pending(self) -> list[str]:
        """Names of the machines not yet settled (failed ones excluded)."""
        return sorted(
            m.name
            for key, m in self.tracked.items()
            if key not in self.failed and not self._settled(m)
        )

    def _settled(self, machine: Machine) -> bool:
        current = self.listed.get(machine.id)
        if current is None:
            return self.want_gone
        return current.state in self.targets

    def outcome(self) -> Outcome:
        failed = {self.tracked[key].name: reason for key, reason in self.failed.items()}
        return Outcome(list(self.tracked.values()), dict(sorted(failed.items())), self.pending())

    def failed_machines(self) -> list[Machine]:
        """The failed machines that still exist, to be deleted."""
        return [
            self.tracked[key]
            for key in self.failed
            if self.tracked[key].id in self.listed and self.tracked[key].state not in GONE
        ]

    def _resolve_duplicates(self) -> None:
        live = (MachineState.DELETED, MachineState.DELETING, MachineState.FAILED)
        groups: dict[int, list[Machine]] = {}
        for machine in self.listed.values():
            if (
                machine.replica is None
                or machine.replica not in self.tracked
                or machine.state in live
                or machine.id in self.removed
                or machine.spec_hash != self.spec_hash
            ):
                continue
            groups.setdefault(machine.replica, []).append(machine)
        for replica, group in groups.items():
            survivor, *losers = sorted(group, key=survivor_key)
            if losers and self._delete is not None:
                names = ", ".join(m.name for m in losers)
                log.warning("deleting duplicate(s) made by a concurrent deploy: %s", names)
                self._delete(losers)
                self.removed.update(m.id for m in losers)
            mine = self.tracked[replica]
            if mine.id == survivor.id:
                continue
            # Another deploy's machine survives: adopt it, and make sure ours
            # (a loser, or one that failed) does not linger.
            current = self.listed.get(mine.id)
            if (
                current is not None
                and current.id not in self.removed
                and current.state not in (MachineState.DELETED, MachineState.DELETING)
                and self._delete is not None
            ):
                self._delete([current])
                self.removed.add(current.id)
            self.tracked[replica] = survivor
            self.failed.pop(replica, None)


def deploy_error(
    workload: str,
    failures: Mapping[str, ProviderError],
    pending: Sequence[str],
    *,
    provider: str,
    replicas: int,
    atomic: bool,
    left: Sequence[str] = (),
) -> ProviderError:
    """The one error a deploy raises when replicas failed or are still pending.

    It names each failed replica with its reason (``error.failed``) and says
    what was done about the others. When every failure is of one class (all
    QuotaExceeded, say) the error is of that class, so ``except
    vmkit.QuotaExceeded`` still works; a deadline makes it a DeployTimeout
    naming the pending replicas. The first failure is its ``__cause__``.
    """
    parts: list[str] = []
    if failures:
        listed = "; ".join(f"{name} ({error})" for name, error in sorted(failures.items()))
        parts.append(f"{len(failures)} of {replicas} replica(s) failed: {listed}")
    if pending:
        parts.append(f"still pending at the deadline: {', '.join(pending)}")
    if left:
        # Say what is still there rather than claim a cleanup that failed.
        parts.append(f"could not delete {', '.join(left)}: see the log, then destroy or gc")
    elif atomic:
        parts.append("every machine this deploy created was deleted (atomic)")
    elif failures:
        parts.append("the failed replicas were deleted, the others kept; deploy again to complete")
    message = f"{workload}: " + "; ".join(parts)
    error: ProviderError
    if pending:
        error = DeployTimeout(message, pending=pending, provider=provider, operation="deploy")
    else:
        first = failures[min(failures)]
        if len({type(e) for e in failures.values()}) == 1:
            try:
                error = copy.copy(first)
                error.args = (message,)
            except Exception:  # a third-party error class that cannot be copied
                error = ProviderError(message, provider=provider, operation="deploy")
        else:
            error = ProviderError(message, provider=provider, operation="deploy")
        error.provider = error.provider or provider
        error.operation = "deploy"
    error.failed = {name: str(e) for name, e in sorted(failures.items())}
    error.left = tuple(left)
    if failures:
        # The SDK's exception stays the cause, as for any other vmkit error.
        first = failures[min(failures)]
        error.__cause__ = first.__cause__ or first
        error.__suppress_context__ = True
    return error


def attempt(
    create: Callable[..., list[Machine]], *args: Any
) -> tuple[list[Machine], ProviderError | None]:
    """``create(*args)``, its ProviderError returned instead of raised (with
    the machines made, when the backend made some: see PartialCreate)."""
    from vmkit.plan import PartialCreate

    try:
        return create(*args), None
    except PartialCreate as exc:
        return exc.machines, exc.error
    except ProviderError as exc:
        return [], exc


def by_replica(machine: Machine) -> tuple[int, str]:
    """Sort key: by replica index, machines without one last."""
    return (machine.replica if machine.replica is not None else 1 << 30, machine.name)


def remove(provider: Provider, workload: str, machines: Sequence[Machine]) -> list[str]:
    """Delete machines after a failed deploy and wait until they are gone.

    Best effort, since the deploy's own error is what the caller must see:
    returns the names of those it could not delete (the reason is logged).
    """
    if not machines:
        return []
    try:
        provider._delete(machines)
        deadline = time.monotonic() + provider.timeout
        provider._wait_gone(workload, [m.id for m in machines], deadline)
    except ProviderError as exc:
        names = ", ".join(m.name for m in machines)
        log.warning("%s: could not delete the failed machine(s) %s: %s", provider.name, names, exc)
        try:
            alive = {m.id for m in provider._list(workload) if m.state not in GONE}
        except ProviderError:
            return sorted(m.name for m in machines)
        return sorted(m.name for m in machines if m.id in alive)
    return []


def roll_back(
    provider: Provider, workload: Workload, created: Sequence[Machine], fresh: bool
) -> list[str]:
    """Delete the machines of ``created`` that still exist (an atomic deploy
    that failed), and the shared resources when the workload was empty before.
    Returns what could not be deleted, as :func:`remove`."""
    wanted = {m.id for m in created}
    try:
        listed = provider._list(workload.name)
        made = [m for m in listed if m.id in wanted and m.state not in GONE]
    except ProviderError:
        made = list(created)  # the listing fails (the error being raised): delete them all
    left = remove(provider, workload.name, made)
    try:
        if fresh and not [m for m in provider._list(workload.name) if m.state not in GONE]:
            provider._delete_shared(workload.name)
    except ProviderError as exc:
        log.warning("%s: could not roll back %s: %s", provider.name, workload.name, exc)
        left.append(f"the shared resources of {workload.name}")
    return left


def wait_gone(provider: Provider, workload: str, ids: Sequence[str], deadline: float) -> None:
    """Poll with one listing per round until none of ``ids`` is listed alive;
    DeployTimeout names those left at the deadline."""
    wanted = set(ids)
    while True:
        alive = [m for m in provider._list(workload) if m.id in wanted and m.state not in GONE]
        if not alive:
            return
        if time.monotonic() >= deadline:
            names = sorted(m.name for m in alive)
            raise DeployTimeout(
                f"{workload}: still being deleted at the deadline: {', '.join(names)}",
                pending=names,
                provider=provider.name,
            )
        time.sleep(provider.poll_interval)
