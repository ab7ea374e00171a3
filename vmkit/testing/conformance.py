"""The conformance suite every vmkit backend passes, ours and third parties'.

Subclass :class:`ProviderConformance` in your own tests and provide two
pytest fixtures (fsspec's ``tests/abstract`` works the same way)::

    from vmkit.testing.conformance import ProviderConformance

    class TestMyCloud(ProviderConformance):
        @pytest.fixture
        def provider(self):
            with my_fake_cloud() as endpoint:
                yield vmkit.connect("mycloud", endpoint=endpoint, poll_interval=0.01)

        @pytest.fixture
        def workload_factory(self):
            def make(name, replicas=2, **overrides):
                return vmkit.Workload(name=name, image="nginx:1.27", replicas=replicas,
                                      ports=[80], **overrides)
            return make

The suite reads ``provider.capabilities`` to know which optional operations
(stop, start, reboot, snapshot, restore) must work and which must raise
:class:`vmkit.Unsupported`. Override ``missing_machine_id`` with an id of
your cloud's shape that does not exist. Every workload a test deploys is
destroyed (snapshots included) when the test ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vmkit.errors import NotFound, SpecError, Unsupported
from vmkit.machine import Machine, MachineState
from vmkit.provider import WORKLOAD_TAG, Provider
from vmkit.spec import Workload

__all__ = ["ProviderConformance"]

WorkloadFactory = Callable[..., Workload]


class ProviderConformance:
    """Tests of the semantics in DESIGN.md, run against one connected backend."""

    #: An id of the backend's own shape that names no machine.
    missing_machine_id: str = "vmkit-conformance-missing"

    # ----------------------------------------------------------------- plumbing

    @pytest.fixture
    def make(
        self, provider: Provider, workload_factory: WorkloadFactory
    ) -> Iterator[WorkloadFactory]:
        """Like ``workload_factory`` with a unique name; destroys what it made."""
        made: list[str] = []

        def factory(suffix: str = "w", replicas: int = 2, **overrides: Any) -> Workload:
            name = f"c{uuid.uuid4().hex[:6]}-{suffix}"
            made.append(name)
            return workload_factory(name, replicas=replicas, **overrides)

        yield factory
        for name in made:
            provider.destroy(name, snapshots=True)

    @staticmethod
    def _ids(machines: list[Machine]) -> list[str]:
        return [m.id for m in machines]

    # ------------------------------------------------------------------- deploy

    def test_deploy_creates_one_running_machine_per_replica(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("dep", replicas=3, labels={"team": "conformance"})
        machines = provider.deploy(workload)
        assert [m.replica for m in machines] == [0, 1, 2]
        assert [m.name for m in machines] == [f"{workload.name}-{i}" for i in range(3)]
        assert len(set(self._ids(machines))) == 3
        for machine in machines:
            assert machine.state == MachineState.RUNNING
            assert machine.workload == workload.name
            assert machine.provider == provider.name
            assert machine.kind == provider.kind
            assert machine.spec_hash == workload.spec_hash
            assert machine.labels.get("team") == "conformance"
            assert WORKLOAD_TAG not in machine.labels, "labels are the user's, not vmkit's tags"

    def test_redeploy_of_the_same_spec_changes_nothing(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("same")
        first = provider.deploy(workload)
        plan = provider.plan(workload)
        assert not plan.changes
        assert [a.kind for a in plan.actions] == ["keep", "keep"]
        assert plan.requests == ()
        second = provider.deploy(workload)
        assert self._ids(second) == self._ids(first)

    def test_scaling_up_adds_and_down_deletes_the_highest_replicas(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("scale", replicas=1)
        (first,) = provider.deploy(workload)
        up = provider.deploy(workload.model_copy(update={"replicas": 3}))
        assert [m.replica for m in up] == [0, 1, 2]
        assert up[0].id == first.id
        down = provider.deploy(workload.model_copy(update={"replicas": 1}))
        assert self._ids(down) == [first.id]
        assert self._ids(provider.list(workload.name)) == [first.id]

    def test_a_changed_spec_replaces_the_replicas(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("chg", replicas=1, env={"VERSION": "1"})
        (old,) = provider.deploy(workload)
        changed = workload.model_copy(update={"env": {"VERSION": "2"}})
        plan = provider.plan(changed)
        assert [(a.kind, a.replica) for a in plan.actions] == [("replace", 0)]
        (new,) = provider.deploy(changed)
        assert new.spec_hash == changed.spec_hash != old.spec_hash
        assert new.name == old.name
        assert [m.spec_hash for m in provider.list(workload.name)] == [changed.spec_hash]

    def test_plan_is_read_only_and_shows_each_create(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("plan", replicas=2)
        plan = provider.plan(workload)
        assert [(a.kind, a.replica) for a in plan.actions] == [("create", 0), ("create", 1)]
        covered = sorted(r for request in plan.requests for r in request.replicas)
        assert covered == [0, 1]
        assert all(request.body for request in plan.requests)
        assert provider.list(workload.name) == []

    def test_apply_sends_the_planned_requests(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("apply", replicas=2)
        machines = provider.apply(provider.plan(workload))
        assert [m.replica for m in machines] == [0, 1]
        assert not provider.plan(workload).changes

    # --------------------------------------------------------- list, get, errors

    def test_list_and_get(self, provider: Provider, make: WorkloadFactory) -> None:
        first, second = make("la", replicas=1), make("lb", replicas=2)
        a = provider.deploy(first)
        b = provider.deploy(second)
        assert self._ids(provider.list(first.name)) == self._ids(a)
        assert self._ids(provider.list(second.name)) == self._ids(b)
        everything = set(self._ids(provider.list()))
        assert set(self._ids(a + b)) <= everything
        got = provider.get(b[1].id)
        assert (got.id, got.name, got.replica, got.workload) == (
            b[1].id,
            b[1].name,
            1,
            second.name,
        )
        assert got.refresh().id == got.id

    def test_get_of_an_unknown_id_raises_not_found(self, provider: Provider) -> None:
        with pytest.raises(NotFound):
            provider.get(self.missing_machine_id)

    def test_invalid_input_fails_before_any_api_call(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        before = sum(provider.api_calls.values())
        with pytest.raises(SpecError):
            provider.deploy({"name": "not-a-workload"})  # type: ignore[arg-type]
        if provider.kind == "vm":
            # No cloud sells a machine with 1024 vCPUs: refused from the catalog.
            with pytest.raises(SpecError) as info:
                provider.deploy(make("huge", replicas=1, resources={"cpu": 1024}))
            assert info.value.field == "resources.cpu"
        assert sum(provider.api_calls.values()) == before

    # ---------------------------------------------------------------- lifecycle

    def _optional(self, provider: Provider, capability: str) -> bool:
        return capability in provider.capabilities

    def test_stop_and_start(self, provider: Provider, make: WorkloadFactory) -> None:
        (machine,) = provider.deploy(make("stop", replicas=1))
        if not self._optional(provider, "stop"):
            with pytest.raises(Unsupported):
                machine.stop()
            return
        stopped = machine.stop()
        assert stopped.state == MachineState.STOPPED
        assert stopped.id == machine.id
        assert provider.get(machine.id).state == MachineState.STOPPED
        started = stopped.start()
        assert started.state == MachineState.RUNNING

    def test_a_stopped_replica_is_kept_by_redeploy(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("keep", replicas=1)
        (machine,) = provider.deploy(workload)
        if not self._optional(provider, "stop"):
            pytest.skip(f"{provider.name} cannot stop machines")
        machine.stop()
        assert not provider.plan(workload).changes

    def test_reboot(self, provider: Provider, make: WorkloadFactory) -> None:
        (machine,) = provider.deploy(make("boot", replicas=1))
        if not self._optional(provider, "reboot"):
            with pytest.raises(Unsupported):
                machine.reboot()
            return
        rebooted = machine.reboot()
        assert rebooted.state == MachineState.RUNNING
        assert rebooted.name == machine.name

    def test_snapshot_restore_and_delete(self, provider: Provider, make: WorkloadFactory) -> None:
        workload = make("snap", replicas=1, labels={"team": "conformance"})
        (machine,) = provider.deploy(workload)
        if not self._optional(provider, "snapshot"):
            with pytest.raises(Unsupported):
                machine.snapshot("before")
            with pytest.raises(Unsupported):
                provider.snapshots(workload.name)
            return
        snap = machine.snapshot("before")
        assert (snap.workload, snap.machine_id, snap.machine) == (
            workload.name,
            machine.id,
            machine.id,
        )
        assert snap.replica == machine.replica
        assert snap.size is None or snap.size > 0
        assert snap.provider == provider.name
        assert [s.id for s in provider.snapshots(workload.name)] == [snap.id]
        assert snap.id in [s.id for s in provider.snapshots()]
        if self._optional(provider, "restore"):
            restored = machine.restore(snap)
            kept = ("id", "name", "replica", "workload", "labels", "private_ip")
            assert [getattr(restored, f) for f in kept] == [getattr(machine, f) for f in kept]
            assert restored.state == MachineState.RUNNING
            assert not provider.plan(workload).changes, "a restored replica is kept"
        else:
            with pytest.raises(Unsupported):
                machine.restore(snap)
        snap.delete()
        assert provider.snapshots(workload.name) == []
        snap.delete()  # idempotent

    def test_snapshots_survive_destroy_and_gc(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        if not self._optional(provider, "snapshot"):
            pytest.skip(f"{provider.name} has no snapshots")
        workload = make("keep", replicas=1)
        (machine,) = provider.deploy(workload)
        snap = machine.snapshot("backup")
        provider.destroy(workload.name)
        assert [s.id for s in provider.snapshots(workload.name)] == [snap.id], (
            "snapshots are backups: destroy keeps them"
        )
        orphans = provider.gc(workload.name, dry_run=True)
        assert snap.id not in [o.id for o in orphans], "gc never deletes a snapshot"
        provider.gc(workload.name)
        assert [s.id for s in provider.snapshots(workload.name)] == [snap.id]
        provider.destroy(workload.name, snapshots=True)
        assert provider.snapshots(workload.name) == []

    def test_clone_from_a_snapshot(self, provider: Provider, make: WorkloadFactory) -> None:
        if not self._optional(provider, "snapshot"):
            pytest.skip(f"{provider.name} has no snapshots")
        (machine,) = provider.deploy(make("orig", replicas=1))
        snap = machine.snapshot("golden")
        clone = make("clone", replicas=2, os_image=snap.id)
        clones = provider.deploy(clone)
        assert [m.replica for m in clones] == [0, 1]
        assert all(m.state == MachineState.RUNNING for m in clones)
        assert not set(self._ids(clones)) & {machine.id}
        assert not provider.plan(clone).changes, "a clone converges like any workload"

    def test_logs_are_text(self, provider: Provider, make: WorkloadFactory) -> None:
        (machine,) = provider.deploy(make("logs", replicas=1))
        assert isinstance(machine.logs(), str)

    def test_delete_one_machine_is_idempotent(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("del", replicas=2)
        machines = provider.deploy(workload)
        machines[1].delete()
        assert self._ids(provider.list(workload.name)) == [machines[0].id]
        machines[1].delete()
        with pytest.raises(NotFound):
            provider.get(machines[1].id)
        # The next deploy brings the fleet back to two.
        assert [m.replica for m in provider.deploy(workload)] == [0, 1]

    def test_destroy_leaves_nothing(self, provider: Provider, make: WorkloadFactory) -> None:
        workload = make("gone", replicas=2)
        machines = provider.deploy(workload)
        destroyed = provider.destroy(workload.name)
        assert sorted(self._ids(destroyed)) == sorted(self._ids(machines))
        assert provider.list(workload.name) == []
        for machine in machines:
            with pytest.raises(NotFound):
                provider.get(machine.id)
        assert provider.destroy(workload.name) == []
        # A re-deploy after destroy builds a new fleet (idempotency keys are per call).
        again = provider.deploy(workload)
        assert len(again) == 2
        assert not set(self._ids(again)) & set(self._ids(machines))

    def test_zero_replicas_deletes_the_fleet(
        self, provider: Provider, make: WorkloadFactory
    ) -> None:
        workload = make("zero", replicas=2)
        provider.deploy(workload)
        assert provider.deploy(workload.model_copy(update={"replicas": 0})) == []
        assert provider.list(workload.name) == []
