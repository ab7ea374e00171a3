"""The deploy semantics every backend inherits from vmkit.provider, on the
in-memory provider: partial failure, atomic deploys, racing deploys, gc.

The same promises are measured against each cloud's fake by
tests/test_reliability.py; here each rule is pinned down on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from memory_provider import MemoryProvider

import vmkit
from vmkit._settle import Tracker, survivor_key
from vmkit.machine import Machine, MachineState
from vmkit.plan import IN_FLIGHT, converge
from vmkit.provider import SPEC_TAG, WORKLOAD_TAG, CreateRequest


def web(replicas: int = 5) -> vmkit.Workload:
    return vmkit.Workload(name="web", image="nginx", replicas=replicas)


def replicas_of(provider: MemoryProvider) -> list[int | None]:
    return sorted((m.replica for m in provider.list("web")), key=lambda r: -1 if r is None else r)


# ------------------------------------------------------------ partial failure


def test_refused_replicas_are_named_and_the_healthy_ones_stay() -> None:
    provider = MemoryProvider()
    provider.capacity = 3
    with pytest.raises(vmkit.QuotaExceeded) as info:
        provider.deploy(web(5))
    error = info.value
    assert set(error.failed) == {"web-3", "web-4"}
    assert "launched 3 of 5" in error.failed["web-3"]
    assert "web-3" in str(error)
    assert "web-4" in str(error)
    assert "deploy again" in str(error)
    assert replicas_of(provider) == [0, 1, 2]

    provider.capacity = None
    assert [m.replica for m in provider.deploy(web(5))] == [0, 1, 2, 3, 4]


def test_a_replica_that_fails_while_starting_is_deleted_and_named() -> None:
    provider = MemoryProvider(timeout=60)
    provider.boot_state = MachineState.PENDING
    provider.deploy(web(3), wait=False)
    first, second, third = provider.list("web")

    def one_fails(machines: object) -> None:
        provider.machines[first.id]["state"] = MachineState.RUNNING
        provider.machines[second.id]["state"] = MachineState.FAILED
        provider.machines[third.id]["state"] = MachineState.RUNNING

    with pytest.raises(vmkit.ProviderError) as info:
        provider.deploy(web(3), progress=one_fails)
    assert type(info.value) is vmkit.ProviderError
    assert info.value.failed == {"web-1": "failed"}
    assert replicas_of(provider) == [0, 2]


def test_the_sdk_exception_stays_the_cause_of_a_deploy_error() -> None:
    provider = MemoryProvider()
    provider.fail_next_create = KeyError("boom")
    with pytest.raises(vmkit.ProviderError) as info:
        provider.deploy(web(2))
    assert isinstance(info.value.__cause__, KeyError)
    assert set(info.value.failed) == {"web-0", "web-1"}


def test_atomic_deploy_deletes_what_it_created_and_the_shared_resources() -> None:
    provider = MemoryProvider()
    provider.capacity = 3
    with pytest.raises(vmkit.QuotaExceeded, match="atomic"):
        provider.deploy(web(5), atomic=True)
    assert provider.list("web") == []
    assert provider.shared == set()


def test_atomic_scale_up_keeps_the_machines_that_were_there() -> None:
    provider = MemoryProvider()
    before = provider.deploy(web(2))
    provider.capacity = 3
    with pytest.raises(vmkit.QuotaExceeded):
        provider.deploy(web(5), atomic=True)
    assert [m.id for m in provider.list("web")] == [m.id for m in before]
    assert provider.shared == {"web"}


def test_atomic_rolls_back_when_the_wait_itself_fails() -> None:
    class Unlistable(MemoryProvider):
        broken = False

        def _list(self, workload: str | None) -> list[Machine]:
            if self.broken:
                raise vmkit.Throttled("still throttled", provider=self.name)
            return super()._list(workload)

        def _create(self, workload: vmkit.Workload, request: CreateRequest) -> list[Machine]:
            made = super()._create(workload, request)
            self.broken = True  # every listing from now on fails
            return made

    provider = Unlistable()
    with pytest.raises(vmkit.Throttled):
        provider.deploy(web(2), atomic=True)
    provider.broken = False
    assert provider.list("web") == []


def test_the_error_says_what_its_cleanup_could_not_delete() -> None:
    class Undeletable(MemoryProvider):
        def _delete(self, machines: Sequence[Machine]) -> None:
            raise vmkit.ProviderError("refused", provider=self.name)

    provider = Undeletable()
    provider.capacity = 1
    with pytest.raises(vmkit.QuotaExceeded) as info:
        provider.deploy(web(2), atomic=True)
    assert info.value.left == ("web-0",)
    assert "could not delete web-0" in str(info.value)
    assert "was deleted" not in str(info.value)


def test_a_timeout_names_the_pending_and_a_later_deploy_converges() -> None:
    provider = MemoryProvider(timeout=0.05)
    provider.boot_state = MachineState.PENDING
    with pytest.raises(vmkit.DeployTimeout) as info:
        provider.deploy(web(2))
    assert info.value.pending == ("web-0", "web-1")
    assert len(provider.list("web")) == 2  # left to come up
    for record in provider.machines.values():
        record["state"] = MachineState.RUNNING
    provider.api_calls.clear()
    assert len(provider.deploy(web(2))) == 2
    assert provider.api_calls["memory:Run"] == 0


def test_failures_of_different_kinds_raise_a_provider_error_naming_both() -> None:
    provider = MemoryProvider(timeout=60)
    provider.capacity = 2
    provider.boot_state = MachineState.PENDING

    def first_fails(machines: object) -> None:
        for record in provider.machines.values():
            record["state"] = MachineState.RUNNING
        record = next(iter(provider.machines.values()))
        record["state"] = MachineState.FAILED

    with pytest.raises(vmkit.ProviderError) as info:
        provider.deploy(web(3), progress=first_fails)
    assert type(info.value) is vmkit.ProviderError
    assert set(info.value.failed) == {"web-0", "web-2"}


# --------------------------------------------------------------- racing deploys


def test_two_deploys_that_planned_together_end_with_one_machine_per_replica() -> None:
    first = MemoryProvider()
    second = MemoryProvider().share(first)
    plans = [first.plan(web(3)), second.plan(web(3))]
    assert all(len(p.requests) == 1 for p in plans)
    made_first = first.apply(plans[0])
    made_second = second.apply(plans[1])
    assert len(first.list("web")) == 3
    # The second deploy's own machines lost to the older ones and were deleted.
    assert [m.id for m in made_second] == [m.id for m in made_first]


def test_every_observer_picks_the_same_survivor() -> None:
    now = datetime.now(UTC)
    old = machine("i-b", replica=0, created=now)
    twin = machine("i-a", replica=0, created=now)
    young = machine("i-0", replica=0, created=now + timedelta(seconds=1))
    for group in ([old, twin, young], [young, twin, old], [twin, old, young]):
        assert min(group, key=survivor_key).id == "i-a"
    deleted: list[str] = []
    tracker = Tracker(
        [young],
        {MachineState.RUNNING},
        failure_reason=str,
        dedupe=True,
        spec_hash="h",
        delete=lambda ms: deleted.extend(m.id for m in ms),
    )
    assert tracker.observe([old, twin, young])
    assert [m.id for m in tracker.outcome().machines] == ["i-a"]
    assert sorted(deleted) == ["i-0", "i-b"]


def test_an_untagged_machine_is_left_to_the_deploy_tagging_it_then_deleted() -> None:
    now = datetime.now(UTC)
    fresh = machine("i-1", replica=None, created=now - timedelta(minutes=1))
    stale = machine("i-2", replica=None, created=now - IN_FLIGHT - timedelta(minutes=1))
    actions = converge(web(1), [fresh, stale], now=now)
    assert [(a.kind, a.machine.id if a.machine else None) for a in actions] == [
        ("delete", "i-2"),
        ("create", None),
    ]


# ------------------------------------------------------------------------ gc


def test_gc_lists_on_dry_run_deletes_otherwise_and_spares_live_workloads() -> None:
    provider = MemoryProvider()
    provider.deploy(web(1))
    provider.shared.add("crashed")
    listed = provider.gc(dry_run=True)
    assert [(o.kind, o.workload) for o in listed] == [("shared", "crashed")]
    assert provider.shared == {"web", "crashed"}
    assert provider.gc() == listed
    assert provider.shared == {"web"}
    assert provider.gc() == []


def test_gc_fails_loudly_when_what_it_deleted_is_still_there() -> None:
    class Stubborn(MemoryProvider):
        def _delete_orphans(self, orphans: object) -> None:
            return None

    provider = Stubborn()
    provider.shared.add("crashed")
    with pytest.raises(vmkit.ProviderError, match="still present after deleting: shared crashed"):
        provider.gc()


def machine(machine_id: str, *, replica: int | None, created: datetime) -> Machine:
    return Machine(
        id=machine_id,
        name=f"web-{replica}" if replica is not None else machine_id,
        provider="memory",
        kind="vm",
        workload="web",
        replica=replica,
        state=MachineState.RUNNING,
        labels={WORKLOAD_TAG: "web", SPEC_TAG: "h"},
        spec_hash="h" if replica is not None else None,
        created_at=created,
    )


def test_gc_only_deletes_what_it_was_shown() -> None:
    provider = MemoryProvider()
    provider.shared.add("crashed")
    preview = provider.gc(dry_run=True)
    provider.shared.add("later")  # orphaned after the user looked
    assert [o.id for o in provider.gc(only=preview)] == ["crashed"]
    assert provider.shared == {"later"}
