"""The shared Provider logic: convergence, waiting, retries and bookkeeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from memory_provider import MemoryProvider

import vmkit
from vmkit.machine import Machine, MachineState
from vmkit.provider import ISOLATION_TAG, CreateRequest, converge, ownership_labels
from vmkit.retry import RetryPolicy


def machine(
    replica: int | None,
    spec_hash: str,
    state: MachineState = MachineState.RUNNING,
    id: str | None = None,
) -> Machine:
    return Machine(
        id=id or f"m-{replica}-{spec_hash}",
        name=f"web-{replica}",
        provider="test",
        kind="vm",
        workload="web",
        replica=replica,
        state=state,
        spec_hash=spec_hash,
    )


WEB = vmkit.Workload(name="web", image="nginx", replicas=3)
H = WEB.spec_hash


def kinds(actions: tuple[object, ...]) -> list[tuple[str, int]]:
    return [(a.kind, a.replica) for a in actions]  # type: ignore[attr-defined]


def test_converge_creates_keeps_replaces_and_deletes() -> None:
    existing = [
        machine(0, H),
        machine(1, "stale"),
        machine(4, H),
    ]
    assert kinds(converge(WEB, existing)) == [
        ("keep", 0),
        ("replace", 1),
        ("create", 2),
        ("delete", 4),
    ]


def test_converge_keeps_the_best_duplicate_and_deletes_the_rest() -> None:
    existing = [
        machine(0, H, MachineState.PENDING, id="b"),
        machine(0, H, MachineState.RUNNING, id="a"),
        machine(1, H),
        machine(2, H),
    ]
    actions = converge(WEB, existing)
    assert kinds(actions) == [("delete", 0), ("keep", 0), ("keep", 1), ("keep", 2)]
    assert [a.machine.id for a in actions if a.kind == "delete"] == ["b"]  # type: ignore[union-attr]


def test_converge_replaces_failed_and_ignores_deleting_machines() -> None:
    existing = [
        machine(0, H, MachineState.FAILED),
        machine(1, H, MachineState.DELETING),
        machine(2, H, MachineState.STOPPED),
    ]
    assert kinds(converge(WEB, existing)) == [("replace", 0), ("create", 1), ("keep", 2)]


def test_converge_deletes_machines_without_a_replica_tag() -> None:
    actions = converge(WEB, [machine(None, H), machine(0, H), machine(1, H), machine(2, H)])
    assert kinds(actions)[0] == ("delete", -1)
    assert actions[0].reason == "no replica tag"


def test_deploy_sends_one_create_per_batch_and_nothing_on_rerun() -> None:
    provider = MemoryProvider()
    workload = vmkit.Workload(name="web", image="nginx", replicas=20)
    provider.deploy(workload)
    assert provider.api_calls["memory:Run"] == 1
    provider.deploy(workload)
    assert provider.api_calls["memory:Run"] == 1


def test_a_retried_create_reuses_its_key_and_makes_no_duplicate() -> None:
    provider = MemoryProvider()
    workload = vmkit.Workload(name="web", image="nginx", replicas=3)
    plan = provider.plan(workload)
    provider.apply(plan)
    # The same plan again = the same request (and key) resent: nothing new.
    provider.apply(plan)
    assert len(provider.list("web")) == 3
    assert provider.api_calls["memory:Run"] == 2


def test_retryable_errors_are_retried_with_the_same_request() -> None:
    provider = MemoryProvider(retry_attempts=3)
    provider.retry_policy = RetryPolicy(attempts=3, sleep=lambda _: None)
    provider.fail_next_create = ConnectionResetError("reset by peer")
    machines = provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=2))
    assert len(machines) == 2
    assert provider.api_calls["memory:Run"] == 2


def test_non_retryable_errors_fail_at_once_with_the_cause_kept() -> None:
    provider = MemoryProvider()
    provider.fail_next_create = KeyError("boom")
    with pytest.raises(vmkit.ProviderError) as info:
        provider.deploy(vmkit.Workload(name="web", image="nginx"))
    assert isinstance(info.value.__cause__, KeyError)
    assert provider.api_calls["memory:Run"] == 1


def test_wait_raises_deploy_timeout_naming_pending_replicas() -> None:
    provider = MemoryProvider(timeout=0.05)
    provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=2), wait=False)
    provider.machines[provider.list("web")[1].id]["state"] = MachineState.PENDING
    with pytest.raises(vmkit.DeployTimeout) as info:
        provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=2))
    assert info.value.pending == ("web-1",)


def test_a_failed_machine_fails_the_wait_at_once() -> None:
    provider = MemoryProvider(timeout=60)
    provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=1))
    (m,) = provider.list("web")
    provider.machines[m.id]["state"] = MachineState.FAILED
    with pytest.raises(vmkit.ProviderError, match="web-0"):
        provider._wait_for("web", [m], {MachineState.RUNNING}, deadline=1e18)


def test_a_replica_deleted_while_starting_fails_the_deploy_and_the_others_stay() -> None:
    provider = MemoryProvider(timeout=60)
    workload = vmkit.Workload(name="web", image="nginx", replicas=2)
    provider.deploy(workload, wait=False)
    for record in provider.machines.values():
        record["state"] = MachineState.PENDING
    survivor, victim = provider.list("web")

    def delete_then_start(machines: object) -> None:
        provider.machines.pop(victim.id, None)
        provider.machines[survivor.id]["state"] = MachineState.RUNNING

    with pytest.raises(vmkit.ProviderError) as info:
        provider.deploy(workload, progress=delete_then_start)
    assert info.value.failed == {"web-1": "deleted while starting"}
    assert "web-1 (deleted while starting)" in str(info.value)
    assert [m.name for m in provider.list("web")] == ["web-0"]


def test_progress_sees_every_round_in_replica_order() -> None:
    provider = MemoryProvider()
    rounds: list[list[str]] = []
    provider.deploy(
        vmkit.Workload(name="web", image="nginx", replicas=3),
        progress=lambda ms: rounds.append([m.name for m in ms]),
    )
    assert rounds == [["web-0", "web-1", "web-2"]]


def test_machine_methods_act_through_their_provider() -> None:
    provider = MemoryProvider()
    (m,) = provider.deploy(vmkit.Workload(name="web", image="nginx"))
    assert m.stop().state == MachineState.STOPPED
    assert m.refresh().state == MachineState.STOPPED
    assert m.start().state == MachineState.RUNNING
    assert m.logs() == "booted web-0\n"
    snap = m.snapshot("before")
    assert provider.snapshots("web")[0].id == snap.id
    m.delete()
    assert provider.list() == []


def test_an_unbound_machine_says_so() -> None:
    with pytest.raises(AttributeError, match="not bound"):
        machine(0, H).refresh()


def test_api_call_counts_are_thread_safe() -> None:
    provider = MemoryProvider()

    def work() -> None:
        for _ in range(200):
            provider._call("memory:Noop", lambda: None)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.api_calls["memory:Noop"] == 800


class PerReplicaProvider(MemoryProvider):
    """One create request per replica, sent concurrently, as Kubernetes and Azure do."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.create_concurrency = 4
        self.failing: set[int] = set()
        self.threads: set[str] = set()

    def _build_requests(
        self, workload: vmkit.Workload, replicas: Sequence[int]
    ) -> list[CreateRequest]:
        build = super()._build_requests
        return [request for i in replicas for request in build(workload, [i])]

    def _create(self, workload: vmkit.Workload, request: CreateRequest) -> list[Machine]:
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02)  # a request's round trip: the pool has time to fan out
        if request.replicas[0] in self.failing:
            raise vmkit.QuotaExceeded(f"no room for replica {request.replicas[0]}")
        return super()._create(workload, request)


def test_per_replica_creates_run_concurrently() -> None:
    provider = PerReplicaProvider()
    machines = provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=8))
    assert [m.replica for m in machines] == list(range(8))
    assert len(provider.threads) > 1


def test_a_failed_create_leaves_the_others_and_raises_its_error() -> None:
    provider = PerReplicaProvider()
    provider.failing = {2}
    with pytest.raises(vmkit.QuotaExceeded, match="replica 2"):
        provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=4))
    assert sorted(m.replica for m in provider.list("web")) == [0, 1, 3]
    provider.failing = set()
    assert [
        m.replica for m in provider.deploy(vmkit.Workload(name="web", image="nginx", replicas=4))
    ] == [0, 1, 2, 3]


def test_isolation_beyond_container_is_recorded_in_the_ownership_tags() -> None:
    plain = vmkit.Workload(name="iso", image="nginx")
    assert ISOLATION_TAG not in ownership_labels(plain, 0)
    boxed = plain.model_copy(update={"isolation": "vm"})
    assert ownership_labels(boxed, 0)[ISOLATION_TAG] == "vm"
    provider = MemoryProvider()
    (machine,) = provider.deploy(vmkit.Workload(name="iso", image="nginx", replicas=1))
    assert ISOLATION_TAG not in provider.machines[machine.id]["tags"]


def test_a_snapshot_record_names_its_machine_replica_and_size() -> None:
    provider = MemoryProvider()
    (machine,) = provider.deploy(vmkit.Workload(name="snaprec", image="nginx", replicas=1))
    snap = machine.snapshot("before")
    assert (snap.machine, snap.machine_id) == (machine.id, machine.id)
    assert (snap.replica, snap.size) == (0, 8)
    record = snap.to_dict()
    assert (record["machine_id"], record["replica"], record["size"]) == (machine.id, 0, 8)
    assert provider.destroy("snaprec")
    assert provider.snapshots("snaprec") == [snap]
    provider.destroy("snaprec", snapshots=True)
    assert provider.snapshots("snaprec") == []


def test_snapshots_on_a_backend_without_them_is_unsupported_naming_why() -> None:
    class NoSnapshots(MemoryProvider):
        capabilities = frozenset({"start", "stop", "reboot"})

        def _unsupported_reason(self, capability: str) -> str:
            return f"no {capability} here: use a VM provider"

    provider = NoSnapshots()
    with pytest.raises(vmkit.Unsupported, match="no snapshot here: use a VM provider"):
        provider.snapshots()
    provider.deploy(vmkit.Workload(name="nosnap", image="nginx", replicas=1))
    assert len(provider.destroy("nosnap", snapshots=True)) == 1
