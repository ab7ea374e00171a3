"""The reliability checks: vmkit's promises, measured under injected faults.

The promise to a pipeline is: run deploy again after any failure and you get
exactly the fleet you asked for, never a duplicate, never an orphan that
keeps billing. Each check here proves one part of it against one backend's
fake and returns a :class:`Row` with what it measured. The same functions
back the test suite (``tests/test_reliability.py``) and the table in
``docs/reliability.md``::

    python -m vmkit.testing.reliability                 # every backend, every check
    python -m vmkit.testing.reliability --backend gcp --check concurrent

A backend (ours or a third party's) takes part by providing a
:class:`Harness`: how to start its fake with a :class:`FaultPlan`, count what
the fake holds without going through vmkit, and turn the fake's own knobs
(quota, slow boot, deletion protection) that the checks need.
"""

from __future__ import annotations

import abc
import importlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from vmkit.errors import DeployTimeout, ProviderError, Throttled
from vmkit.provider import Provider
from vmkit.spec import Workload
from vmkit.testing.faults import FaultPlan

__all__ = [
    "CHECKS",
    "Census",
    "Harness",
    "Row",
    "check_concurrent",
    "check_destroy",
    "check_faults",
    "check_gc",
    "check_partial",
    "check_storm",
    "check_timeout",
    "run",
]

#: The seed of every fault plan: a failing run replays with the same one.
SEED = 20261127


@dataclass(frozen=True)
class Census:
    """What the fake holds for one workload, counted straight from its state.

    ``replicas`` has the replica index of each live machine (None when the
    machine has none yet), so duplicates show. ``resources`` counts every
    other resource carrying the workload's tags or name, by kind (``"nic"``,
    ``"disk"``, ``"security-group"``...). ``orphans`` counts those of them
    that no live machine owns (by the cloud's own ownership: attached,
    referenced, or shared by a workload that still has machines).
    """

    replicas: tuple[int | None, ...] = ()
    resources: dict[str, int] = field(default_factory=dict)
    orphans: int = 0

    @property
    def machines(self) -> int:
        return len(self.replicas)

    @property
    def duplicates(self) -> int:
        counts = Counter(r for r in self.replicas if r is not None)
        return sum(n - 1 for n in counts.values())

    @property
    def total(self) -> int:
        """Machines plus every other resource: 0 once a workload is gone."""
        return self.machines + sum(self.resources.values())


class Harness(abc.ABC):
    """One backend's fake, with the knobs the checks turn.

    Every knob goes through the fake's documented behaviour (a quota, a
    boot that takes long, the cloud's own deletion protection), never a
    patch of vmkit or of an SDK.
    """

    #: The provider name the checks connect to.
    name: str
    #: The HTTP method and a regular expression over the path of the
    #: requests that create machines (and what each machine alone needs:
    #: NICs, IPs), whose first answer check 1 loses.
    create_method: str = "POST"
    create_path: str
    #: The status a throttled request gets from this cloud's front end.
    throttle_status: int = 429

    @abc.abstractmethod
    def start(self, faults: FaultPlan) -> AbstractContextManager[None]:
        """Start a fresh, empty fake that injects ``faults``; stop it on exit."""

    @abc.abstractmethod
    def connect(self, **options: Any) -> Provider:
        """A new provider on the running fake; ``options`` are connect()'s
        shared options (``retry_attempts``, ``retry_timeout``, ``timeout``...)."""

    @abc.abstractmethod
    def census(self, workload: str) -> Census:
        """Count what the fake holds for ``workload``, without vmkit."""

    @abc.abstractmethod
    def limit(self, machines: int) -> None:
        """Make the cloud refuse (a quota or capacity) every machine beyond
        ``machines`` live ones, from the next create on."""

    @abc.abstractmethod
    def allow(self) -> None:
        """Lift what :meth:`limit` set."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Make machines created from now on stay pending (a boot that takes
        far longer than a short deploy timeout)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Let held machines, and new ones, come up."""

    @abc.abstractmethod
    def protect(self, workload: str, replica: int) -> None:
        """Keep that replica's machine from being deleted by the cloud's own
        means (termination/deletion protection, a lock, a finalizer)."""

    @abc.abstractmethod
    def unprotect(self, workload: str, replica: int) -> None:
        """Undo :meth:`protect`."""

    @abc.abstractmethod
    def leak(self, workload: str) -> int:
        """Leave in the fake what a crashed process would leave of
        ``workload``: resources with its tags and no live machine (shared
        ones, and per-machine ones whose machine is gone). Returns how many."""


@dataclass
class Row:
    """One measured check."""

    backend: str
    check: str
    ok: bool
    measured: str
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.ok = False
            self.problems.append(problem)


def _workload(name: str, replicas: int) -> Workload:
    return Workload(name=name, image="nginx:1.27", ports=[80], replicas=replicas)


def _fired(*rules: Any) -> int:
    return sum(int(rule.fired) for rule in rules)


def check_faults(harness: Harness, replicas: int = 50) -> Row:
    """1. ``replicas`` machines while 20% of requests fail (throttling or 5xx)
    and the first answer of every create request is lost after it committed."""
    faults = FaultPlan(SEED)
    with harness.start(faults):
        drops = faults.drop_responses(
            count=None, each=True, method=harness.create_method, path=harness.create_path
        )
        throttles = faults.fail(harness.throttle_status, count=None, rate=0.1)
        errors = faults.fail(503, count=None, rate=0.1)
        provider = harness.connect(retry_attempts=12)
        started = time.monotonic()
        provider.deploy(_workload("faults", replicas))
        elapsed = time.monotonic() - started
        census = harness.census("faults")
        faults.clear()
        provider.destroy("faults")
        after = harness.census("faults")
    row = Row(
        harness.name,
        "faults",
        True,
        f"{census.machines} machines, {census.duplicates} duplicates, "
        f"{drops.fired} answers lost, {_fired(throttles, errors)} requests failed, "
        f"{sum(provider.api_calls.values())} API calls, {elapsed:.1f} s; "
        f"after destroy {after.total} resources left",
    )
    row.expect(census.machines == replicas, f"{census.machines} machines, {replicas} asked")
    row.expect(census.duplicates == 0, f"{census.duplicates} duplicates")
    row.expect(
        sorted(r for r in census.replicas if r is not None) == list(range(replicas)),
        f"replicas {sorted(r for r in census.replicas if r is not None)}",
    )
    row.expect(drops.fired > 0, "no create answer was lost: the check proved nothing")
    row.expect(after.total == 0, f"destroy left {after.resources}")
    return row


def check_concurrent(harness: Harness, replicas: int = 10) -> Row:
    """2. Two deploys of one workload at the same time, each through its own
    connection (as two processes): both plan before either creates."""
    faults = FaultPlan(SEED)
    workload = _workload("race", replicas)
    with harness.start(faults):
        first, second = harness.connect(), harness.connect()
        plans = [first.plan(workload), second.plan(workload)]
        barrier = threading.Barrier(2)
        results: dict[int, Any] = {}

        def deploy(index: int, provider: Provider) -> None:
            barrier.wait()
            try:
                results[index] = provider.apply(plans[index])
            except ProviderError as exc:
                results[index] = exc

        threads = [
            threading.Thread(target=deploy, args=(i, p)) for i, p in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        census = harness.census("race")
        returned = [sorted(m.name for m in r) for r in results.values() if isinstance(r, list)]
        errors = [str(r) for r in results.values() if not isinstance(r, list)]
        again = first.deploy(workload)
        calls = sum(first.api_calls.values()) + sum(second.api_calls.values())
    row = Row(
        harness.name,
        "concurrent",
        True,
        f"{census.machines} machines, {census.duplicates} duplicates "
        f"({sum(len(p.requests) for p in plans)} create requests sent by the two), "
        f"{len(returned)} of 2 deploys succeeded, {calls} API calls",
    )
    wanted = sorted(f"race-{i}" for i in range(replicas))
    row.expect(census.machines == replicas, f"{census.machines} machines, {replicas} asked")
    row.expect(census.duplicates == 0, f"{census.duplicates} duplicates")
    row.expect(not errors, f"a deploy failed: {errors}")
    row.expect(all(names == wanted for names in returned), f"deploys returned {returned}")
    row.expect(len(again) == replicas, "a third deploy did not find the fleet whole")
    return row


def check_partial(harness: Harness, replicas: int = 6, fit: int = 4) -> Row:
    """3. The cloud has room for ``fit`` machines (quota/capacity): those
    stay, nothing is left of the refused replicas, the error names each of
    them with its reason; a rerun completes; ``atomic=True`` leaves nothing."""
    faults = FaultPlan(SEED)
    workload = _workload("partial", replicas)
    with harness.start(faults):
        provider = harness.connect()
        harness.limit(fit)
        error = _raised(lambda: provider.deploy(workload))
        kept = harness.census("partial")
        harness.allow()
        rerun = provider.deploy(workload)
        completed = harness.census("partial")
        provider.destroy("partial")
        harness.limit(fit)
        atomic_error = _raised(lambda: provider.deploy(workload, atomic=True))
        rolled_back = harness.census("partial")
        harness.allow()
    failed = sorted(getattr(error, "failed", {}) or {})
    missing = sorted(f"partial-{i}" for i in range(replicas) if i not in kept.replicas)
    row = Row(
        harness.name,
        "partial",
        True,
        f"{kept.machines} of {replicas} kept, {kept.orphans} orphans, "
        f"error ({type(error).__name__}) names {', '.join(failed) or 'nothing'}; "
        f"rerun: {completed.machines} machines; atomic: {rolled_back.total} resources left",
    )
    row.expect(error is not None, "deploy did not fail")
    row.expect(kept.machines == fit, f"{kept.machines} machines kept, {fit} fit")
    row.expect(kept.duplicates == 0, f"{kept.duplicates} duplicates")
    row.expect(failed == missing, f"error.failed names {failed}, missing are {missing}")
    row.expect(all(name in str(error) for name in missing), f"message: {error}")
    row.expect(kept.orphans == 0, f"{kept.orphans} orphaned resources: {kept.resources}")
    row.expect(len(rerun) == replicas and completed.machines == replicas, "rerun incomplete")
    row.expect(completed.duplicates == 0, f"{completed.duplicates} duplicates after rerun")
    row.expect(atomic_error is not None, "atomic deploy did not fail")
    row.expect(rolled_back.total == 0, f"atomic left {rolled_back.resources}")
    return row


def check_timeout(harness: Harness, replicas: int = 3) -> Row:
    """4. A deploy past its timeout raises DeployTimeout naming the pending
    replicas; a later deploy converges without duplicates."""
    faults = FaultPlan(SEED)
    workload = _workload("slow", replicas)
    with harness.start(faults):
        provider = harness.connect()
        harness.hold()
        started = time.monotonic()
        error = _raised(lambda: provider.deploy(workload, timeout=1.0))
        elapsed = time.monotonic() - started
        harness.release()
        machines = provider.deploy(workload)
        census = harness.census("slow")
    pending = list(getattr(error, "pending", ()))
    row = Row(
        harness.name,
        "timeout",
        True,
        f"{type(error).__name__} after {elapsed:.1f} s naming {len(pending)} pending; "
        f"later deploy: {census.machines} machines, {census.duplicates} duplicates",
    )
    wanted = [f"slow-{i}" for i in range(replicas)]
    row.expect(isinstance(error, DeployTimeout), f"raised {error!r}")
    row.expect(pending == wanted, f"pending {pending}, expected {wanted}")
    row.expect(elapsed < 30, f"took {elapsed:.1f} s for a 1 s timeout")
    row.expect(len(machines) == replicas and census.machines == replicas, "did not converge")
    row.expect(census.duplicates == 0, f"{census.duplicates} duplicates")
    return row


def check_destroy(harness: Harness, replicas: int = 5) -> Row:
    """5. Destroy under faults leaves nothing; a machine the cloud will not
    delete makes destroy fail loudly, naming it."""
    faults = FaultPlan(SEED)
    with harness.start(faults):
        provider = harness.connect(retry_attempts=12, timeout=5.0)
        provider.deploy(_workload("gone", replicas))
        noise = [
            faults.fail(harness.throttle_status, count=None, rate=0.1),
            faults.fail(503, count=None, rate=0.1),
        ]
        provider.destroy("gone")
        clean = harness.census("gone")
        faults.clear()
        provider.deploy(_workload("stuck", 2))
        harness.protect("stuck", 1)
        error = _raised(lambda: provider.destroy("stuck"))
        harness.unprotect("stuck", 1)
        provider.destroy("stuck")
        after = harness.census("stuck")
    row = Row(
        harness.name,
        "destroy",
        True,
        f"{clean.total} resources left after destroy under {_fired(*noise)} faults; "
        f"protected machine: {type(error).__name__}; {after.total} left after unprotecting",
    )
    row.expect(clean.total == 0, f"destroy left {clean.resources}, {clean.machines} machines")
    row.expect(error is not None, "destroy of a protected machine did not fail")
    row.expect("stuck-1" in str(error), f"the error does not name stuck-1: {error}")
    row.expect(after.total == 0, f"left {after.resources}")
    return row


def check_storm(harness: Harness, storm: float = 10.0, replicas: int = 3) -> Row:
    """6. Every request throttled for ``storm`` seconds, then normal: the
    deploy completes; with a retry budget shorter than the storm it raises
    Throttled in about that budget, never hangs."""
    faults = FaultPlan(SEED)
    with harness.start(faults):
        # Enough attempts to outlast the storm whatever the jitter draws (8
        # full-jitter waits add up to under 10 s about 2% of the time); the
        # retry budget in time still bounds the call.
        provider = harness.connect(retry_attempts=30)
        rule = faults.fail(harness.throttle_status, count=None)
        timer = threading.Timer(storm, faults.clear)
        started = time.monotonic()
        timer.start()
        try:
            machines = provider.deploy(_workload("storm", replicas))
        finally:
            timer.cancel()
        through = time.monotonic() - started
        throttled = rule.fired
        faults.fail(harness.throttle_status, count=None)
        budget = harness.connect(retry_timeout=2.0)
        started = time.monotonic()
        error = _raised(lambda: budget.deploy(_workload("budget", 1)))
        gave_up = time.monotonic() - started
        faults.clear()
    row = Row(
        harness.name,
        "storm",
        True,
        f"{storm:.0f} s storm: deployed in {through:.1f} s after {throttled} throttled "
        f"requests; 2 s budget: {type(error).__name__} after {gave_up:.1f} s",
    )
    row.expect(len(machines) == replicas, "the deploy through the storm did not complete")
    row.expect(through >= storm, f"completed in {through:.1f} s, inside the storm?")
    row.expect(isinstance(error, Throttled), f"raised {error!r}")
    row.expect(gave_up < 10, f"gave up after {gave_up:.1f} s on a 2 s budget")
    return row


def check_gc(harness: Harness) -> Row:
    """7. gc finds what a crashed process left (and only that); dry_run
    deletes nothing; gc deletes it; a live workload is untouched."""
    faults = FaultPlan(SEED)
    with harness.start(faults):
        provider = harness.connect()
        provider.deploy(_workload("alive", 2))
        before = harness.census("alive")
        leaked = harness.leak("crashed")
        listed = provider.gc(dry_run=True)
        still = harness.census("crashed")
        deleted = provider.gc()
        after = harness.census("crashed")
        alive = harness.census("alive")
        again = provider.gc()
    kinds = Counter(o.kind for o in listed)
    row = Row(
        harness.name,
        "gc",
        True,
        f"{leaked} leaked, dry run listed {len(listed)} "
        f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
        f"gc deleted {len(deleted)}, {after.total} left; live workload untouched: "
        f"{alive == before}",
    )
    row.expect(len(listed) == leaked, f"dry run listed {len(listed)}, {leaked} leaked")
    row.expect(all(o.workload == "crashed" for o in listed), f"listed {listed}")
    row.expect(still.total == leaked, "dry run deleted something")
    row.expect(after.total == 0, f"gc left {after.resources}")
    row.expect(alive == before, f"the live workload changed: {before} -> {alive}")
    row.expect(again == [], f"a second gc found {again}")
    return row


def _raised(action: Callable[[], object]) -> BaseException | None:
    try:
        action()
    except ProviderError as exc:
        return exc
    return None


#: Every check, by the name the table and ``--check`` use, in table order.
CHECKS: dict[str, Callable[[Harness], Row]] = {
    "faults": check_faults,
    "concurrent": check_concurrent,
    "partial": check_partial,
    "timeout": check_timeout,
    "destroy": check_destroy,
    "storm": check_storm,
    "gc": check_gc,
}


#: The built-in backends' harnesses: module and class, imported when used.
_BUILT_IN = {
    "aws": ("vmkit.testing.reliability.aws", "AwsHarness"),
    "gcp": ("vmkit.testing.reliability.gcp", "GcpHarness"),
    "azure": ("vmkit.testing.reliability.azure", "AzureHarness"),
    "kubernetes": ("vmkit.testing.reliability.kubernetes", "KubernetesHarness"),
}


def harnesses() -> dict[str, Callable[[], Harness]]:
    """The built-in backends' harness factories; each imports its module
    (and so its SDK) only when called."""

    def factory(module: str, name: str) -> Callable[[], Harness]:
        def make() -> Harness:
            harness: Harness = getattr(importlib.import_module(module), name)()
            return harness

        return make

    return {backend: factory(*where) for backend, where in _BUILT_IN.items()}


def run(harness: Harness, checks: Sequence[str] = tuple(CHECKS)) -> Iterator[Row]:
    """Run ``checks`` against ``harness``; a check that raises is a failed row."""
    for name in checks:
        try:
            yield CHECKS[name](harness)
        except Exception as exc:  # the table must show it, not stop
            yield Row(harness.name, name, False, "raised", [f"{type(exc).__name__}: {exc}"])
