"""An in-memory Provider for testing the shared base class without a cloud.

It implements the primitives over a dict, with an idempotency-key table like
EC2's, so the convergence, waiting and bookkeeping in vmkit.provider are
exercised exactly as a real backend exercises them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from vmkit.errors import NotFound, ProviderError, QuotaExceeded, SpecError, VmkitError
from vmkit.machine import Machine, MachineState, Orphan, Snapshot
from vmkit.provider import (
    REPLICA_TAG,
    SPEC_TAG,
    WORKLOAD_TAG,
    CreateRequest,
    PartialCreate,
    Provider,
)
from vmkit.spec import Workload


class MemoryErrors:
    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def retry_after(self, exc: BaseException) -> float | None:
        return None

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        return ProviderError(f"{operation}: {exc}", provider="memory", operation=operation)


class MemoryProvider(Provider):
    name: ClassVar[str] = "memory"
    kind = "vm"
    errors = MemoryErrors()

    def __init__(self, **options: Any) -> None:
        options.setdefault("poll_interval", 0.0)
        super().__init__(**options)
        self.machines: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, list[str]] = {}
        self.shared: set[str] = set()
        self.snaps: dict[str, Snapshot] = {}
        self.fail_next_create: BaseException | None = None
        #: Machines that fit (like EC2 capacity: a launch makes what fits).
        self.capacity: int | None = None
        #: The state new machines start in (PENDING holds them there).
        self.boot_state = MachineState.RUNNING
        self._ids = itertools.count(1)

    def share(self, other: MemoryProvider) -> MemoryProvider:
        """Use ``other``'s cloud: two connections, as two processes have."""
        self.machines, self.tokens, self.shared = other.machines, other.tokens, other.shared
        self.snaps, self._ids = other.snaps, other._ids
        return self

    @property
    def location(self) -> str:
        return "memory"

    def _validate(self, workload: Workload) -> None:
        if workload.resources.gpu:
            raise SpecError("resources.gpu", "the memory provider has no GPU machines")
        if workload.resources.cpu > 64:
            raise SpecError("resources.cpu", "the memory provider's machines have 64 vCPUs at most")
        image = workload.os_image
        if image.startswith("s-") and image not in self.snaps:
            raise SpecError("os_image", f"no snapshot {image} to clone")

    def _machine(self, record: dict[str, Any]) -> Machine:
        tags = record["tags"]
        replica = tags.get(REPLICA_TAG)
        return Machine(
            id=record["id"],
            name=tags.get("Name", record["id"]),
            provider=self.name,
            kind="vm",
            workload=tags[WORKLOAD_TAG],
            replica=int(replica) if replica is not None else None,
            state=record["state"],
            size="small",
            location=self.location,
            labels={k: v for k, v in tags.items() if not k.startswith("vmkit-") and k != "Name"},
            spec_hash=tags.get(SPEC_TAG),
            created_at=record["created"],
            raw=dict(record),
        )

    def _list(self, workload: str | None) -> list[Machine]:
        self.api_calls["memory:List"] += 1
        return [
            self._machine(r)
            for r in self.machines.values()
            if workload is None or r["tags"][WORKLOAD_TAG] == workload
        ]

    def _get(self, machine_id: str) -> Machine:
        self.api_calls["memory:Get"] += 1
        if machine_id not in self.machines:
            raise NotFound(f"no machine {machine_id}", provider=self.name)
        return self._machine(self.machines[machine_id])

    def _build_requests(self, workload: Workload, replicas: Sequence[int]) -> list[CreateRequest]:
        body = {
            "Count": len(replicas),
            "Token": str(uuid.uuid4()),
            "Tags": {WORKLOAD_TAG: workload.name, SPEC_TAG: workload.spec_hash, **workload.labels},
        }
        return [CreateRequest("memory:Run", tuple(replicas), body)]

    def _ensure_shared(self, workload: Workload) -> None:
        self.shared.add(workload.name)

    def _run(self, body: dict[str, Any]) -> list[str]:
        if self.fail_next_create is not None:
            exc, self.fail_next_create = self.fail_next_create, None
            raise exc
        if body["Token"] in self.tokens:
            return self.tokens[body["Token"]]
        ids = []
        count = body["Count"]
        if self.capacity is not None:
            count = min(count, max(0, self.capacity - len(self.machines)))
        for _ in range(count):
            machine_id = f"m-{next(self._ids)}"
            self.machines[machine_id] = {
                "id": machine_id,
                "state": self.boot_state,
                "tags": dict(body["Tags"]),
                "created": datetime.now(UTC),
            }
            ids.append(machine_id)
        self.tokens[body["Token"]] = ids
        return ids

    def _create(self, workload: Workload, request: CreateRequest) -> list[Machine]:
        ids = self._call(request.operation, self._run, dict(request.body))
        for machine_id, replica in zip(ids, request.replicas, strict=False):
            tags = self.machines[machine_id]["tags"]
            tags[REPLICA_TAG] = str(replica)
            tags["Name"] = f"{workload.name}-{replica}"
        made = [self._machine(self.machines[i]) for i in ids]
        if len(ids) < len(request.replicas):
            refused = QuotaExceeded(
                f"capacity: launched {len(ids)} of {len(request.replicas)}", provider=self.name
            )
            raise PartialCreate(made, refused)
        return made

    def _delete(self, machines: Sequence[Machine]) -> None:
        self.api_calls["memory:Delete"] += 1
        for machine in machines:
            self.machines.pop(machine.id, None)

    def _delete_shared(self, workload: str) -> None:
        self.shared.discard(workload)

    def _orphans(self, workload: str | None) -> list[Orphan]:
        alive = {r["tags"][WORKLOAD_TAG] for r in self.machines.values()}
        return [
            Orphan(
                kind="shared",
                id=name,
                name=name,
                provider=self.name,
                workload=name,
                reason="no machine of the workload",
            )
            for name in sorted(self.shared - alive)
            if workload is None or name == workload
        ]

    def _delete_orphans(self, orphans: Sequence[Orphan]) -> None:
        for orphan in orphans:
            self.shared.discard(orphan.id)

    def _logs(self, machine: Machine) -> str:
        return f"booted {machine.name}\n"

    def _set_state(self, machine: Machine, state: MachineState) -> None:
        self.machines[machine.id]["state"] = state

    def _start(self, machine: Machine) -> None:
        self._set_state(machine, MachineState.RUNNING)

    def _stop(self, machine: Machine) -> None:
        self._set_state(machine, MachineState.STOPPED)

    def _reboot(self, machine: Machine) -> None:
        self._set_state(machine, MachineState.RUNNING)

    def _snapshot(self, machine: Machine, name: str) -> Snapshot:
        snap = Snapshot(
            id=f"s-{next(self._ids)}",
            name=name,
            provider=self.name,
            workload=machine.workload,
            machine_id=machine.id,
            state="available",
            created_at=datetime.now(UTC),
            size=8,
            replica=machine.replica,
        )
        self.snaps[snap.id] = snap
        return snap

    def _snapshots(self, workload: str | None) -> list[Snapshot]:
        return [s for s in self.snaps.values() if workload is None or s.workload == workload]

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        self._set_state(machine, MachineState.RUNNING)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        self.snaps.pop(snapshot_id, None)
