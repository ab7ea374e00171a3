"""Pure functions of the sqlite backend: spec -> request, row -> Machine.

Nothing here touches the database, so every rule (size resolution, derived
states, the request body) is testable on its own and shared by the provider.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmkit.errors import QuotaExceeded, SpecError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import SPEC_TAG, WORKLOAD_TAG, CreateRequest
from vmkit.spec import Workload, format_size

__all__ = [
    "CREATE_OPERATION",
    "SIZES",
    "Size",
    "build_create_request",
    "effective_state",
    "new_machine_id",
    "new_private_ip",
    "new_snapshot_id",
    "resolve_size",
    "row_to_machine",
    "row_to_snapshot",
    "validate",
]

PROVIDER = "sqlite"
CREATE_OPERATION = "sqlite:RunMachines"
#: Option keys accepted in ``Workload.options["sqlite"]``.
OPTION_KEYS = frozenset({"size", "fail_boot"})
MACHINE_ID_PREFIX = "sq-"
SNAPSHOT_ID_PREFIX = "snap-"
# The simulated machines get addresses from one private /16 (RFC 1918).
NETWORK = ipaddress.IPv4Network("10.77.0.0/16")


@dataclass(frozen=True)
class Size:
    """One machine size of the simulated catalog."""

    name: str
    cpu: float
    memory: int


def _gib(n: float) -> int:
    return int(n * 2**30)


#: The simulated catalog, cheapest first: a deploy picks the first that fits.
SIZES: tuple[Size, ...] = (
    Size("sq.micro", 1, _gib(1)),
    Size("sq.small", 1, _gib(2)),
    Size("sq.medium", 2, _gib(4)),
    Size("sq.large", 4, _gib(16)),
    Size("sq.xlarge", 8, _gib(32)),
    Size("sq.4xlarge", 32, _gib(128)),
    Size("sq.16xlarge", 64, _gib(512)),
)
_BY_NAME = {size.name: size for size in SIZES}


def validate(workload: Workload) -> None:
    """Raise SpecError for what the simulated cloud cannot run. No I/O."""
    options = workload.options_for(PROVIDER)
    unknown = sorted(set(options) - OPTION_KEYS)
    if unknown:
        raise SpecError(
            f"options.{PROVIDER}.{unknown[0]}",
            f"unknown option; accepted: {', '.join(sorted(OPTION_KEYS))}",
        )
    if not isinstance(options.get("fail_boot", False), bool):
        raise SpecError(f"options.{PROVIDER}.fail_boot", "expected true or false")
    resolve_size(workload)


def resolve_size(workload: Workload) -> str:
    """The size a replica gets: ``options["sqlite"]["size"]`` when set, else the
    cheapest of :data:`SIZES` with enough vCPUs and memory. Raises SpecError
    naming the field that no size satisfies."""
    resources = workload.resources
    if resources.gpu:
        raise SpecError("resources.gpu", "the sqlite backend simulates no GPU machines")
    explicit = workload.options_for(PROVIDER).get("size")
    if explicit is not None:
        if explicit not in _BY_NAME:
            known = ", ".join(_BY_NAME)
            raise SpecError(f"options.{PROVIDER}.size", f"no size {explicit!r}; known: {known}")
        return str(explicit)
    biggest = SIZES[-1]
    if resources.cpu > biggest.cpu:
        raise SpecError("resources.cpu", f"the largest size has {biggest.cpu:g} vCPUs")
    if resources.memory > biggest.memory:
        raise SpecError(
            "resources.memory", f"the largest size has {format_size(biggest.memory)} of memory"
        )
    return next(s.name for s in SIZES if s.cpu >= resources.cpu and s.memory >= resources.memory)


def build_create_request(
    workload: Workload, replicas: Sequence[int], *, client_token: str | None = None
) -> CreateRequest:
    """ONE request creating every replica of ``replicas``, with its key.

    ``client_token`` is new for each call unless given: per deploy call, never
    derived from the spec, so a re-deploy after a destroy builds a new fleet.
    """
    token = client_token if client_token is not None else str(uuid.uuid4())
    options = workload.options_for(PROVIDER)
    body: dict[str, Any] = {
        "ClientToken": token,
        "Count": len(replicas),
        "Workload": workload.name,
        "Replicas": list(replicas),
        "Names": [f"{workload.name}-{r}" for r in replicas],
        "Size": resolve_size(workload),
        "Image": workload.image or workload.os_image,
        "SpecHash": workload.spec_hash,
        "Labels": dict(workload.labels),
        "Ports": [str(port) for port in workload.ports],
        "FailBoot": bool(options.get("fail_boot", False)),
    }
    return CreateRequest(CREATE_OPERATION, tuple(replicas), body)


def effective_state(target: str, ready_at: float, now: float) -> MachineState:
    """The state a reader sees at ``now``: the target once ``ready_at`` is
    reached, before that the transition towards it."""
    settled = MachineState(target)
    if now >= ready_at:
        return settled
    if settled == MachineState.STOPPED:
        return MachineState.STOPPING
    return MachineState.PENDING


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def row_to_machine(
    row: Mapping[str, Any], labels: Mapping[str, str], *, location: str, now: float
) -> Machine:
    """A Machine from one ``machines`` row and its ``tags`` rows, seen at ``now``."""
    state = effective_state(row["target"], row["ready_at"], now)
    raw = dict(row)
    raw["tags"] = {**labels, WORKLOAD_TAG: row["workload"], SPEC_TAG: row["spec_hash"]}
    return Machine(
        id=row["id"],
        name=row["name"],
        provider=PROVIDER,
        kind="vm",
        workload=row["workload"],
        replica=row["replica"],
        state=state,
        size=row["size"],
        image=row["image"],
        location=location,
        private_ip=row["private_ip"],
        labels=dict(labels),
        created_at=_when(row["created_at"]),
        spec_hash=row["spec_hash"],
        raw=raw,
    )


def row_to_snapshot(row: Mapping[str, Any]) -> Snapshot:
    """A Snapshot from one ``snapshots`` row."""
    return Snapshot(
        id=row["id"],
        name=row["name"],
        provider=PROVIDER,
        workload=row["workload"],
        machine_id=row["machine_id"],
        state="available",
        created_at=_when(row["created_at"]),
        replica=row.get("replica"),
        raw=dict(row),
    )


def new_machine_id() -> str:
    """A random machine id, unique across the processes sharing a file."""
    return MACHINE_ID_PREFIX + secrets.token_hex(6)


def new_snapshot_id() -> str:
    """A random snapshot id."""
    return SNAPSHOT_ID_PREFIX + secrets.token_hex(6)


def new_private_ip(taken: Iterable[str]) -> str:
    """A free address of :data:`NETWORK` (network and broadcast left out).
    Raises QuotaExceeded when every address is taken."""
    used = set(taken)
    hosts = NETWORK.num_addresses - 2
    if len(used) >= hosts:
        raise QuotaExceeded(f"no free address left in {NETWORK}", provider=PROVIDER)
    while True:
        address = str(NETWORK.network_address + 1 + secrets.randbelow(hosts))
        if address not in used:
            return address
