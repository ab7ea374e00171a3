"""The Compute Engine fake's state: records whose status is computed from time.

Nothing runs in the background. Every record carries a :class:`Timeline` of
``(time, status)`` steps scheduled when a request is handled; reading a
record evaluates the timeline at the current clock, so PROVISIONING ->
STAGING -> RUNNING or PENDING -> RUNNING -> DONE happen lazily and stop with
the server. A step ``GONE`` marks when a deleted record disappears.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from vmkit.testing.fakes.gce.catalog import PUBLIC_IMAGES, ImageSpec, MachineTypeSpec

__all__ = [
    "GONE",
    "Attached",
    "Disk",
    "Firewall",
    "GceState",
    "Image",
    "Instance",
    "Nic",
    "OpError",
    "Operation",
    "Snapshot",
    "Timeline",
]

GONE = "GONE"

#: statuses that hold CPU quota (a TERMINATED instance does not)
QUOTA_STATUSES = frozenset({"PROVISIONING", "STAGING", "RUNNING", "STOPPING", "REPAIRING"})


@dataclass
class Timeline:
    """Status steps ``(at, status)``, sorted; the current status is the last reached."""

    steps: list[tuple[float, str]]

    def at(self, now: float) -> str:
        current = self.steps[0][1]
        for when, status in self.steps:
            if when <= now:
                current = status
        return current

    def then(self, now: float, *steps: tuple[float, str]) -> None:
        """Replace whatever was still scheduled after ``now`` with ``steps``."""
        self.steps = [s for s in self.steps if s[0] <= now] + list(steps)

    def gone(self, now: float) -> bool:
        return self.at(now) == GONE

    def ends_at(self) -> float:
        return self.steps[-1][0]


@dataclass
class OpError:
    """A failure shown on a DONE operation (``error.errors[]`` + httpError*)."""

    code: str
    message: str
    http_status: int
    http_message: str
    details: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Operation:
    project: str
    zone: str | None
    name: str
    id: str
    op_type: str
    target_link: str | None
    target_id: str | None
    created: float
    done_at: float
    user: str
    error: OpError | None = None
    bulk: dict[str, int] | None = None
    #: operationGroupId: a bulkInsert and the insert operation of each of its instances
    group: str | None = None

    def status(self, now: float) -> str:
        if now >= self.done_at:
            return "DONE"
        return "RUNNING" if now >= self.created + (self.done_at - self.created) / 2 else "PENDING"


@dataclass
class Attached:
    """A disk attached to an instance."""

    disk: str
    boot: bool
    auto_delete: bool
    device_name: str
    mode: str
    interface: str
    index: int
    size_gb: int
    architecture: str
    licenses: list[str]


@dataclass
class Nic:
    name: str
    network: str
    subnetwork: str
    ip: str
    access: dict[str, Any] | None
    nat_ip: str | None = None


@dataclass
class Instance:
    project: str
    zone: str
    name: str
    id: str
    created: float
    machine_type: MachineTypeSpec
    timeline: Timeline
    labels: dict[str, str]
    metadata: list[dict[str, str]]
    tags: list[str]
    nics: list[Nic]
    disks: list[Attached]
    scheduling: dict[str, Any]
    shielded: dict[str, bool]
    accelerators: list[dict[str, Any]]
    extra: dict[str, Any]
    last_start: float | None = None
    last_stop: float | None = None
    serial: list[tuple[float, str]] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]


@dataclass
class Disk:
    project: str
    zone: str
    name: str
    id: str
    created: float
    size_gb: int
    disk_type: str
    architecture: str
    licenses: list[str]
    timeline: Timeline
    source_image: str | None = None
    source_image_id: str | None = None
    source_snapshot: str | None = None
    source_snapshot_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: when an instance last took / gave back the disk (lastAttachTimestamp, lastDetachTimestamp)
    last_attach: float | None = None
    last_detach: float | None = None


@dataclass
class Snapshot:
    project: str
    name: str
    id: str
    created: float
    source_disk: str
    source_disk_id: str
    disk_size_gb: int
    architecture: str
    licenses: list[str]
    storage_location: str
    timeline: Timeline
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Firewall:
    project: str
    name: str
    id: str
    created: float
    body: dict[str, Any]
    timeline: Timeline


@dataclass
class Image:
    spec: ImageSpec
    id: str


class GceState:
    """Everything the fake stores, keyed by project (and zone for zonal resources).

    Callers hold the server's lock around every method that reads or writes.
    """

    def __init__(
        self,
        *,
        operation_delay: float,
        transition_delay: float,
        user: str,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self.operation_delay = operation_delay
        self.transition_delay = transition_delay
        self.user = user
        self.clock = clock
        self.rng = random.Random(seed)
        self.instances: dict[tuple[str, str, str], Instance] = {}
        self.disks: dict[tuple[str, str, str], Disk] = {}
        self.snapshots: dict[tuple[str, str], Snapshot] = {}
        self.firewalls: dict[tuple[str, str], Firewall] = {}
        #: (project, zone or "global", name)
        self.operations: dict[tuple[str, str, str], Operation] = {}
        self.requests: dict[tuple[str, str], Operation] = {}
        self.images: list[Image] = [Image(spec, self.new_id()) for spec in PUBLIC_IMAGES]
        #: CPUS quota by region; the key None applies to every region
        self.cpu_quota: dict[str | None, int] = {}
        #: filled in by the server from its constructor
        self.zones: tuple[str, ...] = ()
        self.machine_types: dict[str, MachineTypeSpec] = {}
        self.networks: set[str] = {"default"}
        #: exhausted zones; "*" exhausts every zone
        self.exhausted: set[str] = set()
        #: zones that aggregated lists cannot read (see GceFake.make_unreachable)
        self.unreachable: set[str] = set()
        #: a bulkInsert that makes some names and fails others carries the
        #: first failure as its own error (see GceFake.report_partial_bulk_errors)
        self.bulk_partial_error = False
        #: while set, new instances stop at STAGING (a boot that does not finish)
        self.hold = False
        self.held: set[tuple[str, str, str]] = set()
        self._ip_counter = 1
        self._nat_counter = 0

    # ------------------------------------------------------------------ basics

    def now(self) -> float:
        return self.clock()

    def new_id(self) -> str:
        """A decimal 64-bit id as the API's ``id`` fields (uint64, JSON string)."""
        return str(self.rng.randrange(10**18, 2**63))

    def operation_name(self, now: float) -> str:
        """``operation-<ms>-<13 hex>-<8 hex>-<8 hex>``, the real format
        (e.g. operation-1728938708258-62475e98b4d71-14d19ec0-defb4629)."""
        bits = self.rng.getrandbits
        return f"operation-{int(now * 1000)}-{bits(52):013x}-{bits(32):08x}-{bits(32):08x}"

    def next_internal_ip(self) -> str:
        """The next free address of the default subnet (10.128.0.0/20 in us-central1;
        .0 and .1 are reserved)."""
        self._ip_counter += 1
        return f"10.128.{self._ip_counter // 256}.{self._ip_counter % 256}"

    def next_nat_ip(self) -> str:
        """An ephemeral external address (a new one for every start, as on GCE)."""
        self._nat_counter += 1
        n = self._nat_counter
        return f"34.{120 + n // 65536 % 8}.{n // 256 % 256}.{n % 256}"

    # -------------------------------------------------------------- operations

    def new_operation(
        self,
        project: str,
        zone: str | None,
        op_type: str,
        *,
        target_link: str | None,
        target_id: str | None,
        done_at: float | None = None,
        error: OpError | None = None,
        request_id: str | None = None,
    ) -> Operation:
        """Record an operation; DONE at ``done_at`` (default: after operation_delay)."""
        now = self.now()
        op = Operation(
            project=project,
            zone=zone,
            name=self.operation_name(now),
            id=self.new_id(),
            op_type=op_type,
            target_link=target_link,
            target_id=target_id,
            created=now,
            done_at=max(done_at if done_at is not None else now, now + self.operation_delay),
            user=self.user,
            error=error,
        )
        self.operations[(project, zone or "global", op.name)] = op
        if request_id:
            self.requests[(project, request_id)] = op
        return op

    def replayed(self, project: str, request_id: str | None) -> Operation | None:
        """The operation an earlier request with this requestId started, if any."""
        if not request_id:
            return None
        return self.requests.get((project, request_id))

    # ----------------------------------------------------------------- lookups

    def instance(self, project: str, zone: str, name: str) -> Instance | None:
        record = self.instances.get((project, zone, name))
        if record is None or record.timeline.gone(self.now()):
            return None
        return record

    def instances_in(self, project: str, zone: str | None = None) -> list[Instance]:
        now = self.now()
        return [
            i
            for (p, z, _), i in self.instances.items()
            if p == project and (zone is None or z == zone) and not i.timeline.gone(now)
        ]

    def disk(self, project: str, zone: str, name: str) -> Disk | None:
        record = self.disks.get((project, zone, name))
        if record is None or record.timeline.gone(self.now()):
            return None
        return record

    def disks_in(self, project: str, zone: str) -> list[Disk]:
        now = self.now()
        return [
            d
            for (p, z, _), d in self.disks.items()
            if p == project and z == zone and not d.timeline.gone(now)
        ]

    def disk_users(self, disk: Disk) -> list[Instance]:
        return [
            i
            for i in self.instances_in(disk.project, disk.zone)
            if any(a.disk == disk.name for a in i.disks)
        ]

    def snapshot(self, project: str, name: str) -> Snapshot | None:
        record = self.snapshots.get((project, name))
        if record is None or record.timeline.gone(self.now()):
            return None
        return record

    def snapshots_in(self, project: str) -> list[Snapshot]:
        now = self.now()
        return [
            s for (p, _), s in self.snapshots.items() if p == project and not s.timeline.gone(now)
        ]

    def firewall(self, project: str, name: str) -> Firewall | None:
        record = self.firewalls.get((project, name))
        now = self.now()
        if record is None or record.timeline.at(now) != "READY":
            return None
        return record

    def firewalls_in(self, project: str) -> list[Firewall]:
        now = self.now()
        return [
            f
            for (p, _), f in self.firewalls.items()
            if p == project and f.timeline.at(now) == "READY"
        ]

    def image(self, project: str, name: str, *, family: bool) -> Image | None:
        """An image by name, or the newest non-deprecated image of a family."""
        if not family:
            return next(
                (i for i in self.images if i.spec.project == project and i.spec.name == name),
                None,
            )
        members = [
            i
            for i in self.images
            if i.spec.project == project and i.spec.family == name and not i.spec.deprecated_by
        ]
        return max(members, key=lambda i: i.spec.creation, default=None)

    # ------------------------------------------------------------------ quota

    def cpu_usage(self, project: str, region: str) -> int:
        now = self.now()
        return sum(
            i.machine_type.guest_cpus
            for i in self.instances_in(project)
            if i.region == region and i.timeline.at(now) in QUOTA_STATUSES
        )

    def cpu_limit(self, region: str) -> int | None:
        return self.cpu_quota.get(region, self.cpu_quota.get(None))

    def is_exhausted(self, zone: str) -> bool:
        return zone in self.exhausted or "*" in self.exhausted

    def reap(self) -> None:
        """Forget records whose GONE step has passed (keeps lookups cheap)."""
        now = self.now()
        _reap(self.instances, now)
        _reap(self.disks, now)
        _reap(self.snapshots, now)
        _reap(self.firewalls, now)


class _Timed(Protocol):
    timeline: Timeline


K = TypeVar("K")
R = TypeVar("R", bound=_Timed)


def _reap(store: dict[K, R], now: float) -> None:
    for key in [k for k, v in store.items() if v.timeline.gone(now)]:
        del store[key]
