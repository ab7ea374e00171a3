"""The Provider base class: every operation of the public API, written once.

A backend subclasses :class:`Provider` and implements small primitives (list
the machines of a workload, build and send one create request, delete some
machines, ...). The convergence logic, the waiting and the bookkeeping of API
calls live here, so every backend behaves the same way.

Guarantees, for every backend:

* **Idempotent and convergent.** ``deploy`` compares the replicas the cloud's
  tags say exist with the spec: it creates the missing ones, keeps those whose
  spec hash matches, replaces those whose hash differs and deletes the
  surplus. Running it twice with the same spec creates nothing.
* **Safe to retry.** Each create request carries an idempotency key that is
  new for each deploy call and reused when that same request is retried, so a
  lost response never makes a duplicate.
* **No leaks.** A deploy deletes what it made for replicas that failed.
* **Read-only plans.** ``plan`` makes no mutating call. Deploy failures,
  racing deploys and waiting are in :mod:`vmkit._settle`.
"""

from __future__ import annotations

import abc
import builtins
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from vmkit._gc import collect
from vmkit._settle import (
    GONE,
    Tracker,
    attempt,
    by_replica,
    deploy_error,
    remove,
    roll_back,
    wait_gone,
)
from vmkit.errors import DeployTimeout, NotFound, ProviderError, SpecError, Unsupported
from vmkit.machine import Machine, MachineKind, MachineState, Orphan, Snapshot
from vmkit.plan import (
    ISOLATION_TAG,
    MANAGED_BY,
    REPLICA_TAG,
    SPEC_TAG,
    WORKLOAD_TAG,
    Action,
    CreateRequest,
    PartialCreate,
    Plan,
    converge,
    ownership_labels,
)
from vmkit.retry import ErrorMap, RetryPolicy, call_with_retry
from vmkit.spec import Workload

__all__ = [
    "ISOLATION_TAG",
    "MANAGED_BY",
    "REPLICA_TAG",
    "SPEC_TAG",
    "WORKLOAD_TAG",
    "Action",
    "CreateRequest",
    "PartialCreate",
    "Plan",
    "Progress",
    "Provider",
    "converge",
    "ownership_labels",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Optional operations a backend may support; declared in ``Provider.capabilities``.
CAPABILITIES = frozenset({"start", "stop", "reboot", "snapshot", "restore"})
#: Called by deploy with the replicas' latest records after each poll round.
Progress = Callable[[Sequence[Machine]], None]


class Provider(abc.ABC):
    """A connected backend. Get one with ``vmkit.connect(name, **config)``.

    Subclasses set ``name`` and ``kind``, declare the optional operations they
    support in ``capabilities``, and implement the primitives marked abstract.
    Every SDK call goes through :meth:`_call`, which retries what the
    backend's ``errors`` says is retryable, maps the rest to the vmkit
    hierarchy and counts the calls in ``api_calls``.
    """

    name: ClassVar[str]
    kind: ClassVar[MachineKind]
    capabilities: ClassVar[frozenset[str]] = CAPABILITIES
    errors: ClassVar[ErrorMap]

    def __init__(
        self,
        *,
        retry_attempts: int = 8,
        retry_timeout: float = 120.0,
        poll_interval: float = 5.0,
        timeout: float = 900.0,
    ) -> None:
        self.retry_policy = RetryPolicy(attempts=retry_attempts, timeout=retry_timeout)
        #: Create requests of one plan sent at once (1: one after another).
        #: Backends whose requests are independent raise it.
        self.create_concurrency = 1
        self.poll_interval = poll_interval
        self.timeout = timeout
        #: API requests sent, by operation, retries included.
        self.api_calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"

    # ------------------------------------------------------------------ public

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where machines go: region, zone, namespace..."""

    def plan(self, workload: Workload) -> Plan:
        """Return what ``deploy`` would do, with the exact create requests.

        Makes read-only calls only (listing, image and size resolution).
        Raises SpecError for a spec this backend cannot run, before any call.
        """
        self._check(workload)
        return self._plan(workload)

    def deploy(
        self,
        workload: Workload,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: Progress | None = None,
        atomic: bool = False,
    ) -> builtins.list[Machine]:
        """Converge the cloud to ``workload`` and return its machines by replica.

        Idempotent: deploying the same spec again creates nothing. With
        ``wait`` (the default) returns once every replica is running (or
        stopped by the user). ``progress`` is called with the replicas'
        latest records after each poll round.

        When some replicas fail (refused, or failed while starting), the
        others are awaited, what was made for the failed ones is deleted, and
        one error names each with its reason (``error.failed``); deploying
        again completes the fleet. ``atomic=True`` deletes every machine this
        call created instead (and the shared resources if the workload was
        empty). Past ``timeout`` seconds (the provider's when None) it raises
        DeployTimeout naming the replicas still pending. Racing deploys of one
        workload end with one machine per replica (the oldest).
        """
        self._check(workload)
        plan = self._plan(workload)
        return self.apply(plan, wait=wait, timeout=timeout, progress=progress, atomic=atomic)

    def apply(
        self,
        plan: Plan,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: Progress | None = None,
        atomic: bool = False,
    ) -> builtins.list[Machine]:
        """Carry out ``plan`` (from :meth:`plan`), sending exactly its requests.

        See :meth:`deploy` for waiting, failures, ``timeout``, ``progress``
        and ``atomic``.
        """
        workload = plan.workload
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        doomed = [a.machine for a in plan.of("delete", "replace") if a.machine is not None]
        # Under atomic, a call that found the workload empty also removes the
        # shared resources it made when it rolls back.
        fresh = not plan.of("keep") and not doomed
        if doomed:
            log.info("%s: deleting %d machine(s) of %s", self.name, len(doomed), workload.name)
            self._delete(doomed)
            self._wait_gone(workload.name, [m.id for m in doomed], deadline)
        created: builtins.list[Machine] = []
        try:
            if workload.replicas:
                # Every deploy, not only those that create: it also puts back
                # shared resources (firewall rules...) that drifted from the spec.
                self._ensure_shared(workload)
            created, refused = self._create_all(workload, plan.requests)
            kept = [a.machine for a in plan.of("keep") if a.machine is not None]
            machines = sorted(kept + created, key=by_replica)
            failures = {f"{workload.name}-{r}": error for r, error in refused.items()}
            pending: builtins.list[str] = []
            broken: builtins.list[Machine] = []
            if wait and machines:
                settled = {MachineState.RUNNING, MachineState.STOPPED}
                tracker = self._tracker(machines, settled, workload=workload)
                self._follow(workload.name, deadline, tracker, progress)
                outcome = tracker.outcome()
                machines, pending = outcome.machines, outcome.pending
                by_name = {m.name: m for m in outcome.machines}
                for name, reason in outcome.failed.items():
                    failures[name] = self._failure_error(by_name[name], reason)
                broken = tracker.failed_machines()
        except BaseException:
            # A listing that kept failing, an interrupt...: atomic still means
            # nothing of this call stays.
            if atomic:
                roll_back(self, workload, created, fresh)
            raise
        if not failures and not pending:
            return self._bound(machines)
        if atomic:
            left = roll_back(self, workload, created, fresh)
        else:
            left = remove(self, workload.name, broken)
        raise deploy_error(
            workload.name,
            failures,
            pending,
            provider=self.name,
            replicas=workload.replicas,
            atomic=atomic,
            left=left,
        )

    def list(self, workload: str | None = None) -> builtins.list[Machine]:
        """The managed machines (of one workload, or all), deleted ones left out."""
        machines = [m for m in self._list(workload) if m.state not in GONE]
        return self._bound(sorted(machines, key=lambda m: (m.workload, by_replica(m))))

    def get(self, machine_id: str) -> Machine:
        """One managed machine by id. Raises NotFound."""
        machine = self._get(machine_id)
        if machine.state in GONE:
            raise NotFound(f"machine {machine_id} is deleted", provider=self.name)
        return machine.bind(self)

    def start(self, machine_id: str, *, wait: bool = True) -> Machine:
        """Start a stopped machine; with ``wait``, return once it runs."""
        return self._transition("start", machine_id, MachineState.RUNNING, wait)

    def stop(self, machine_id: str, *, wait: bool = True) -> Machine:
        """Stop a machine (its disk is kept); with ``wait``, return once stopped."""
        return self._transition("stop", machine_id, MachineState.STOPPED, wait)

    def reboot(self, machine_id: str, *, wait: bool = True) -> Machine:
        """Reboot a machine; with ``wait``, return once it runs again."""
        return self._transition("reboot", machine_id, MachineState.RUNNING, wait)

    def delete(self, machine_id: str, *, wait: bool = True) -> None:
        """Delete one machine and what it alone owns (NIC, IP, disk).

        Idempotent: deleting a machine that is already gone is not an error.
        """
        try:
            machine = self._get(machine_id)
        except NotFound:
            return
        if machine.state in GONE:
            return
        self._delete([machine])
        if wait:
            deadline = time.monotonic() + self.timeout
            self._wait_gone(machine.workload, [machine.id], deadline)

    def snapshot(self, machine_id: str, name: str) -> Snapshot:
        """Snapshot the machine's boot disk, labelled with its workload."""
        self._require("snapshot")
        if not name or len(name) > 60:
            raise SpecError("name", "a snapshot name needs 1 to 60 characters")
        return self._snapshot(self.get(machine_id), name).bind(self)

    def snapshots(self, workload: str | None = None) -> builtins.list[Snapshot]:
        """The snapshots vmkit made (of one workload, or all), newest first.

        Raises Unsupported on a backend without snapshots (containers)."""
        self._require("snapshot")
        found = self._snapshots(workload)
        newest = sorted(found, key=lambda s: (s.created_at is not None, s.created_at), reverse=True)
        return [s.bind(self) for s in newest]

    def restore(self, machine_id: str, snapshot: Snapshot) -> Machine:
        """Put the machine's boot disk back to ``snapshot``; name, replica and
        tags are kept. The machine runs again when this returns."""
        self._require("restore")
        machine = self.get(machine_id)
        self._restore(machine, snapshot)
        deadline = time.monotonic() + self.timeout
        (restored,) = self._wait_for(machine.workload, [machine], {MachineState.RUNNING}, deadline)
        return restored.bind(self)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot. Idempotent."""
        self._require("snapshot")
        self._delete_snapshot(snapshot_id)

    def logs(self, machine_id: str) -> str:
        """Console output (VMs) or the container log (pods), as text."""
        return self._logs(self.get(machine_id))

    def destroy(self, workload: str, *, snapshots: bool = False) -> builtins.list[Machine]:
        """Delete every machine and every resource the workload owns.

        Waits until the machines are gone, then deletes the shared resources
        (firewall, key pair, ...), then lists again and raises ProviderError if
        anything tagged with the workload remains. Snapshots are backups and
        stay unless ``snapshots=True``. Returns the machines that were deleted.
        """
        machines = [m for m in self._list(workload) if m.state not in GONE]
        if machines:
            self._delete(machines)
            self._wait_gone(workload, [m.id for m in machines], time.monotonic() + self.timeout)
        self._delete_shared(workload)
        if snapshots and "snapshot" in self.capabilities:
            for snap in self.snapshots(workload):
                self._delete_snapshot(snap.id)
        left = [m for m in self._list(workload) if m.state not in GONE]
        if left:
            names = ", ".join(m.name for m in left)
            raise ProviderError(
                f"destroy {workload}: still present after deleting: {names}",
                provider=self.name,
                operation="destroy",
            )
        gone = [replace(m, state=MachineState.DELETED) for m in machines]
        return self._bound(sorted(gone, key=by_replica))

    def gc(
        self,
        workload: str | None = None,
        *,
        dry_run: bool = False,
        only: Iterable[Orphan] | None = None,
    ) -> builtins.list[Orphan]:
        """Delete what vmkit made that no live machine owns; return what was found.

        Finds the resources carrying vmkit's tags (of ``workload``, or of
        every workload) that no live machine owns: shared resources of a
        workload with no machine left (security group, firewall rule, key
        pair...) and per-machine ones whose machine is gone (NIC, public IP,
        disk). Snapshots are backups and never count. With ``dry_run``
        nothing is deleted; with ``only`` (a dry run's result, say) just
        those of them still orphaned are. Afterwards it looks again and
        raises ProviderError naming whatever it deleted that is still there.

        Run it when no deploy or restore of those workloads is in flight: a
        deploy makes its shared resources a moment before its machines.
        """
        return collect(self, workload, dry_run=dry_run, only=only)

    @classmethod
    def credentials_status(cls, **config: Any) -> str | None:
        """None when credentials resolve for ``config``, else why not. No API call."""
        return None

    # -------------------------------------------------------------- primitives

    def _validate(self, workload: Workload) -> None:  # noqa: B027 - optional hook
        """Refuse (SpecError/Unsupported) what this backend cannot run. No API call."""

    @abc.abstractmethod
    def _list(self, workload: str | None) -> builtins.list[Machine]:
        """Managed machines from the cloud, one listing (paginated)."""

    @abc.abstractmethod
    def _get(self, machine_id: str) -> Machine:
        """One managed machine; NotFound when absent or not managed by vmkit."""

    @abc.abstractmethod
    def _build_requests(
        self, workload: Workload, replicas: Sequence[int]
    ) -> builtins.list[CreateRequest]:
        """The create requests for ``replicas``, keys included. Read-only calls only."""

    @abc.abstractmethod
    def _ensure_shared(self, workload: Workload) -> None:
        """Create (idempotently) what the replicas share: firewall, key pair..."""

    @abc.abstractmethod
    def _create(self, workload: Workload, request: CreateRequest) -> builtins.list[Machine]:
        """Send one create request (retried with the same key). On failure,
        delete what it made before raising; when the cloud made only some of
        the request's replicas, raise PartialCreate with those."""

    def _create_all(
        self, workload: Workload, requests: Sequence[CreateRequest]
    ) -> tuple[builtins.list[Machine], dict[int, ProviderError]]:
        """Send every create request of a plan, ``create_concurrency`` at a time;
        return the machines made and, by replica, the error of each that failed."""
        workers = min(self.create_concurrency, len(requests))
        if workers <= 1:
            results = [attempt(self._create, workload, request) for request in requests]
        else:
            prefix = f"vmkit-{self.name}-create"
            with ThreadPoolExecutor(workers, thread_name_prefix=prefix) as pool:
                futures = [
                    pool.submit(attempt, self._create, workload, request) for request in requests
                ]
            results = [future.result() for future in futures]
        made: builtins.list[Machine] = []
        refused: dict[int, ProviderError] = {}
        for request, (machines, error) in zip(requests, results, strict=True):
            made.extend(machines)
            if error is not None:
                done = {m.replica for m in machines}
                refused.update({r: error for r in request.replicas if r not in done})
        return made, refused

    @abc.abstractmethod
    def _delete(self, machines: Sequence[Machine]) -> None:
        """Start deleting ``machines`` (and what each alone owns)."""

    @abc.abstractmethod
    def _delete_shared(self, workload: str) -> None:
        """Delete the shared resources of a workload whose machines are gone."""

    @abc.abstractmethod
    def _logs(self, machine: Machine) -> str:
        """The machine's console output or container log."""

    def _orphans(self, workload: str | None) -> builtins.list[Orphan]:
        """Resources with vmkit's tags (of ``workload``, or all) that no live
        machine owns. Read-only. None when a backend makes only machines."""
        return []

    def _delete_orphans(self, orphans: Sequence[Orphan]) -> None:
        """Delete ``orphans`` (from :meth:`_orphans`); one already gone is fine."""
        raise Unsupported(f"{self.name} cannot delete orphaned resources", provider=self.name)

    def _start(self, machine: Machine) -> None:
        raise Unsupported(f"{self.name} cannot start machines", provider=self.name)

    def _stop(self, machine: Machine) -> None:
        raise Unsupported(f"{self.name} cannot stop machines", provider=self.name)

    def _reboot(self, machine: Machine) -> Machine | None:
        """Reboot; return the new record when the backend had to make a new
        machine in its place (its id changed), else None."""
        raise Unsupported(f"{self.name} cannot reboot machines", provider=self.name)

    def _snapshot(self, machine: Machine, name: str) -> Snapshot:
        raise Unsupported(f"{self.name} cannot snapshot machines", provider=self.name)

    def _snapshots(self, workload: str | None) -> builtins.list[Snapshot]:
        return []

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        raise Unsupported(f"{self.name} cannot restore snapshots", provider=self.name)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        raise Unsupported(f"{self.name} has no snapshots", provider=self.name)

    # ----------------------------------------------------------------- helpers

    def _call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the SDK under the shared retry policy; count every attempt."""

        def count() -> None:
            with self._calls_lock:
                self.api_calls[operation] += 1

        return call_with_retry(
            self.retry_policy, self.errors, operation, lambda: fn(*args, **kwargs), on_attempt=count
        )

    def _check(self, workload: Workload) -> None:
        if not isinstance(workload, Workload):
            raise SpecError("workload", f"expected a vmkit.Workload, got {type(workload).__name__}")
        self._validate(workload)

    def _plan(self, workload: Workload) -> Plan:
        actions = converge(workload, self._list(workload.name))
        to_create = [a.replica for a in actions if a.kind in ("create", "replace")]
        requests = self._build_requests(workload, to_create) if to_create else []
        return Plan(self.name, workload, actions, tuple(requests))

    def _require(self, capability: str) -> None:
        if capability not in self.capabilities:
            raise Unsupported(self._unsupported_reason(capability), provider=self.name)

    def _unsupported_reason(self, capability: str) -> str:
        """Why ``capability`` is Unsupported; a backend may name the alternative."""
        return f"{self.name} does not support {capability}"

    def _transition(
        self, operation: str, machine_id: str, target: MachineState, wait: bool
    ) -> Machine:
        self._require(operation)
        machine = self.get(machine_id)
        replacement = getattr(self, f"_{operation}")(machine)
        if isinstance(replacement, Machine):
            # The backend made a new machine in its place (a recreated pod).
            machine = replacement
        if not wait:
            return self.get(machine.id)
        deadline = time.monotonic() + self.timeout
        (done,) = self._wait_for(machine.workload, [machine], {target}, deadline)
        return done.bind(self)

    def _bound(self, machines: Iterable[Machine]) -> builtins.list[Machine]:
        return [m.bind(self) for m in machines]

    def _wait_for(
        self,
        workload: str,
        machines: Sequence[Machine],
        targets: set[MachineState],
        deadline: float,
        progress: Progress | None = None,
    ) -> builtins.list[Machine]:
        """Follow the workload until every machine is in a target state.

        Returns the latest records in the order given. A machine not listed
        yet (eventual consistency) counts as pending. One that fails, is
        deleted, or vanishes from the listing after it was seen, while it
        should come up, raises ProviderError at once naming it and the
        cloud's reason; the deadline raises DeployTimeout naming those still
        pending.
        """
        if not machines:
            return []
        tracker = self._tracker(machines, targets, fail_fast=True)
        self._follow(workload, deadline, tracker, progress)
        outcome = tracker.outcome()
        if outcome.failed:
            reasons = ", ".join(f"{name} ({why})" for name, why in outcome.failed.items())
            raise ProviderError(
                f"{workload}: failed: {reasons}", provider=self.name, operation="wait"
            )
        if outcome.pending:
            raise DeployTimeout(
                f"{workload}: still pending at the deadline: {', '.join(outcome.pending)}",
                pending=outcome.pending,
                provider=self.name,
                operation="wait",
            )
        return outcome.machines

    #: A listing always shows every machine that exists (no eventual consistency).
    consistent_listing: ClassVar[bool] = False

    def _tracker(
        self,
        machines: Sequence[Machine],
        targets: set[MachineState],
        *,
        workload: Workload | None = None,
        fail_fast: bool = False,
    ) -> Tracker:
        """The bookkeeping of one wait; with ``workload``, a deploy's (by
        replica, resolving duplicates of that spec)."""
        return Tracker(
            machines,
            targets,
            failure_reason=self._failure_reason,
            dedupe=workload is not None,
            spec_hash=workload.spec_hash if workload is not None else None,
            delete=self._delete,
            consistent=self.consistent_listing,
            fail_fast=fail_fast,
        )

    def _follow(
        self, workload: str, deadline: float, tracker: Tracker, progress: Progress | None
    ) -> None:
        """Feed ``tracker`` the workload's listing, one per poll round, until
        nothing is pending, a machine fails (when the tracker fails fast) or
        the deadline passes. Backends with a watch override this."""
        while True:
            done = tracker.observe(self._list(workload))
            if progress is not None:
                progress(self._bound(tracker.outcome().machines))
            if done or (tracker.fail_fast and tracker.failed) or time.monotonic() >= deadline:
                return
            time.sleep(self.poll_interval)

    def _failure_reason(self, machine: Machine) -> str:
        """Why a machine failed, from the cloud's record. Backends refine it."""
        return str(machine.state)

    def _failure_error(self, machine: Machine, reason: str) -> ProviderError:
        """The error of a replica that failed while starting; backends pick
        the class from the cloud's record (an allocation failure is a quota)."""
        return ProviderError(reason, provider=self.name, operation="wait")

    def _wait_gone(self, workload: str, ids: Sequence[str], deadline: float) -> None:
        """Poll until none of ``ids`` is listed alive (see _settle.wait_gone)."""
        wait_gone(self, workload, ids, deadline)
