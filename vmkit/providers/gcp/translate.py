"""Pure functions between vmkit's records and Compute Engine's REST shapes.

Nothing here calls Google. Shapes are those of the compute v1 REST reference
(https://cloud.google.com/compute/docs/reference/rest/v1/) in their JSON
spelling (camelCase, int64 as strings), as ``proto.Message.to_dict`` gives
them: ``instances.bulkInsert``'s ``BulkInsertInstanceResource``, ``Instance``,
``Firewall``, ``Snapshot``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from vmkit.catalog import PORTABLE_IMAGES, instance_types, resolve_image
from vmkit.errors import SpecError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import REPLICA_TAG, SPEC_TAG, WORKLOAD_TAG, ownership_labels
from vmkit.spec import Workload

__all__ = [
    "IMAGE_METADATA_KEY",
    "MACHINE_LABEL",
    "OPTION_NAMES",
    "STATES",
    "Arch",
    "BootSource",
    "GcpOptions",
    "boot_disk",
    "boot_source",
    "bulk_insert_body",
    "disk_gib",
    "firewall_body",
    "firewall_name",
    "firewall_owner",
    "insert_body",
    "last_segment",
    "needs_attached_gpus",
    "owner_filter",
    "parse_options",
    "replica_name",
    "snapshot_labels",
    "snapshot_resource_name",
    "to_machine",
    "to_snapshot",
    "user_labels",
]

Arch = Literal["x86_64", "arm64"]

#: Label of a snapshot: the id of the machine whose boot disk it copies.
MACHINE_LABEL = "vmkit-machine"
#: Metadata item recording the image a machine was booted from (labels cannot hold URLs).
IMAGE_METADATA_KEY = "vmkit-image"

# Instance.status values (compute_v1/types/compute.py, Instance.Status).
STATES: Mapping[str, MachineState] = {
    "PROVISIONING": MachineState.PENDING,
    "STAGING": MachineState.PENDING,
    "REPAIRING": MachineState.PENDING,
    "RUNNING": MachineState.RUNNING,
    "STOPPING": MachineState.STOPPING,
    "SUSPENDING": MachineState.STOPPING,
    "TERMINATED": MachineState.STOPPED,
    "SUSPENDED": MachineState.STOPPED,
}

# Resource names are RFC 1035 labels (the regex the API quotes in its 400s).
NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
# "Metadata must not exceed 512 KB in total" (instance metadata limits,
# https://cloud.google.com/compute/docs/metadata/setting-custom-metadata#limitations).
METADATA_LIMIT = 512 * 1024
OPTION_NAMES = ("accelerator_type", "arch", "disk_type", "machine_type", "source_ranges")
DISK_TYPES = frozenset({"pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced"})


@dataclass(frozen=True)
class GcpOptions:
    """``Workload.options["gcp"]``, validated."""

    machine_type: str | None = None
    arch: Arch = "x86_64"
    source_ranges: tuple[str, ...] = ("0.0.0.0/0",)
    accelerator_type: str | None = None
    disk_type: str = "pd-balanced"


def _text(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not NAME_RE.match(value.strip()):
        raise SpecError(f"options.gcp.{key}", f"must be a Compute Engine name, got {value!r}")
    return value.strip()


def parse_options(workload: Workload) -> GcpOptions:
    """Validate ``options["gcp"]``. Raises SpecError naming ``options.gcp.<key>``."""
    options = workload.options_for("gcp")
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise SpecError(
            f"options.gcp.{unknown[0]}", f"unknown option; accepted: {', '.join(OPTION_NAMES)}"
        )
    arch = options.get("arch", "x86_64")
    if arch not in ("x86_64", "arm64"):
        raise SpecError("options.gcp.arch", f"must be 'x86_64' or 'arm64', got {arch!r}")
    ranges: tuple[str, ...] = ("0.0.0.0/0",)
    given = options.get("source_ranges")
    if given is not None:
        if isinstance(given, str) or not isinstance(given, Sequence) or not given:
            raise SpecError("options.gcp.source_ranges", "must be a non-empty list of CIDRs")
        try:
            ranges = tuple(str(ipaddress.ip_network(str(c), strict=False)) for c in given)
        except ValueError as exc:
            raise SpecError("options.gcp.source_ranges", str(exc)) from exc
    disk_type = _text(options, "disk_type") or "pd-balanced"
    if disk_type not in DISK_TYPES:
        raise SpecError("options.gcp.disk_type", f"must be one of {', '.join(sorted(DISK_TYPES))}")
    return GcpOptions(
        machine_type=_text(options, "machine_type"),
        arch=arch,
        source_ranges=ranges,
        accelerator_type=_text(options, "accelerator_type"),
        disk_type=disk_type,
    )


def owner_filter(workload: str | None) -> str:
    """The list filter on vmkit's workload label (of ``workload``, or any)."""
    if workload is not None:
        return f'labels.{WORKLOAD_TAG} = "{workload}"'
    return f"labels.{WORKLOAD_TAG}:*"


def replica_name(workload: str, replica: int) -> str:
    """The deterministic instance name of a replica: ``<workload>-<replica>``."""
    return f"{workload}-{replica}"


def firewall_name(workload: str) -> str:
    """The workload's firewall rule, which is also its instances' network tag."""
    return f"vmkit-{workload}"


def _firewall_description(workload: str) -> str:
    return f"vmkit workload {workload}: declared ports only"


def last_segment(link: str | None) -> str:
    """``.../zones/us-central1-a/machineTypes/e2-small`` -> ``e2-small``."""
    return (link or "").rstrip("/").rsplit("/", 1)[-1]


def disk_gib(size: int) -> int:
    """Bytes -> whole GiB for ``diskSizeGb`` (Compute Engine's GB are GiB), rounded up."""
    return max(1, math.ceil(size / 2**30))


_URL_PREFIX = re.compile(r"^https://[^/]+/compute/v1/")
_PROJECT = r"[a-z][-a-z0-9.:]*"
_IMAGE_PATH = re.compile(rf"projects/{_PROJECT}/global/images/(family/)?[a-z][-a-z0-9]*")
_SNAPSHOT_PATH = re.compile(
    rf"(?:projects/(?P<project>{_PROJECT})/)?global/snapshots/(?P<name>[a-z][-a-z0-9]*)"
)


@dataclass(frozen=True)
class BootSource:
    """What a boot disk is made from: an image (or image family) or a snapshot.

    ``path`` is ``projects/<p>/global/images/...`` or
    ``projects/<p>/global/snapshots/<name>``, the partial URL both
    ``initializeParams`` fields take."""

    kind: Literal["image", "snapshot"]
    path: str

    @property
    def project(self) -> str:
        return self.path.split("/")[1]

    @property
    def name(self) -> str:
        return last_segment(self.path)


def boot_source(os_image: str, arch: Arch, project: str) -> BootSource:
    """Where ``os_image`` boots from, checked in this order:

    1. a portable name (``ubuntu-22.04``...): its image family;
    2. an image or image-family path or URL (``projects/P/global/images/...``);
    3. a snapshot path or URL (``global/snapshots/NAME``, ``projects/P/global/snapshots/NAME``);
    4. a bare resource name: a snapshot of ``project`` (what ``Snapshot.id`` is).

    A bare name is never an image: images are always named with their project
    (an image family of another project such as ``debian-12`` needs its path),
    so a name of the portable table wins and any other bare name is a
    snapshot. Pure: whether the snapshot exists is checked by the caller.
    Raises SpecError naming ``os_image`` for anything else.
    """
    ref = resolve_image("gcp", os_image, arch=arch)
    if ref.kind == "family":
        return BootSource("image", ref.value)
    value = ref.value.strip()
    path = _URL_PREFIX.sub("", value)
    if _IMAGE_PATH.fullmatch(path):
        return BootSource("image", path)
    snapshot = _SNAPSHOT_PATH.fullmatch(path)
    if snapshot is not None and NAME_RE.match(snapshot["name"]):
        owner = snapshot["project"] or project
        return BootSource("snapshot", f"projects/{owner}/global/snapshots/{snapshot['name']}")
    if NAME_RE.match(value):
        return BootSource("snapshot", f"projects/{project}/global/snapshots/{value}")
    raise SpecError(
        "os_image",
        f"{os_image!r} is not a portable image ({', '.join(PORTABLE_IMAGES)}), an image "
        "path such as projects/debian-cloud/global/images/family/debian-12, nor a snapshot "
        "(a vmkit snapshot id, or global/snapshots/NAME)",
    )


def needs_attached_gpus(machine_type: str, gpus: int) -> bool:
    """True when GPUs must be attached as ``guestAccelerators``: accelerator-optimized
    types (a2, a3, g2...) carry theirs built in, which the catalog records
    (https://cloud.google.com/compute/docs/accelerator-optimized-machines)."""
    if gpus <= 0:
        return False
    built_in = {t.name for t in instance_types("gcp") if t.gpus > 0}
    return machine_type not in built_in and not re.match(r"^(a2|a3|a4|g2|g4)-", machine_type)


def _metadata(workload: Workload, user_data: str | None, image: str) -> list[dict[str, str]]:
    items = [{"key": IMAGE_METADATA_KEY, "value": image}]
    if user_data is not None:
        # cloud-init reads the "user-data" key on Compute Engine
        # (https://cloudinit.readthedocs.io/en/latest/reference/datasources/gce.html).
        items.append({"key": "user-data", "value": user_data})
    if workload.ssh_public_key is not None:
        # "USERNAME:KEY" per line (https://cloud.google.com/compute/docs/connect/add-ssh-keys).
        items.append({"key": "ssh-keys", "value": f"vmkit:{workload.ssh_public_key.strip()}"})
    return items


def metadata_size(workload: Workload, user_data: str | None) -> int:
    """Bytes the instance metadata takes (keys and values), for the 512 KB limit."""
    items = _metadata(workload, user_data, "")
    return sum(len(i["key"].encode()) + len(i["value"].encode()) for i in items)


def _instance_properties(
    workload: Workload,
    *,
    labels: dict[str, str],
    machine_type: str,
    source: BootSource,
    disk_gb: int,
    user_data: str | None,
    options: GcpOptions,
    network: str,
    subnetwork: str | None,
    zone: str | None,
) -> dict[str, Any]:
    """The instance fields shared by bulkInsert's template and instances.insert.

    With ``zone`` None the type fields are bare names, as a template takes
    them ("not a URL", InstanceProperties.machine_type); with a zone they are
    the partial URLs instances.insert takes (``zones/<z>/machineTypes/<t>``,
    Instance.machine_type and AttachedDiskInitializeParams.disk_type in
    compute_v1/types/compute.py).
    """

    def typed(kind: str, name: str) -> str:
        return name if zone is None else f"zones/{zone}/{kind}/{name}"

    nic: dict[str, Any] = {"network": f"global/networks/{network}"}
    if subnetwork is not None:
        nic["subnetwork"] = subnetwork
    if workload.ports:
        nic["accessConfigs"] = [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]
    scheduling: dict[str, Any] = {}
    if workload.spot:
        # Spot VMs cannot restart automatically nor live-migrate; DELETE on
        # preemption lets the next deploy recreate the replica, where a STOPped
        # one would be kept as a deliberate stop
        # (https://cloud.google.com/compute/docs/instances/create-use-spot).
        scheduling = {
            "provisioningModel": "SPOT",
            "instanceTerminationAction": "DELETE",
            "automaticRestart": False,
            "onHostMaintenance": "TERMINATE",
        }
    gpus = workload.resources.gpu
    if gpus > 0:
        # GPU VMs cannot live-migrate (https://cloud.google.com/compute/docs/gpus).
        scheduling["onHostMaintenance"] = "TERMINATE"
    source_field = "sourceImage" if source.kind == "image" else "sourceSnapshot"
    properties: dict[str, Any] = {
        "machineType": typed("machineTypes", machine_type),
        "labels": labels,
        "tags": {"items": [firewall_name(workload.name)]},
        "metadata": {"items": _metadata(workload, user_data, source.path)},
        "disks": [
            {
                "boot": True,
                # The API default is false, which leaks the disk with the VM.
                "autoDelete": True,
                "initializeParams": {
                    source_field: source.path,
                    "diskSizeGb": str(disk_gb),
                    "diskType": typed("diskTypes", options.disk_type),
                    "labels": {WORKLOAD_TAG: workload.name},
                },
            }
        ],
        "networkInterfaces": [nic],
        "shieldedInstanceConfig": {
            "enableSecureBoot": True,
            "enableVtpm": True,
            "enableIntegrityMonitoring": True,
        },
    }
    if scheduling:
        properties["scheduling"] = scheduling
    if needs_attached_gpus(machine_type, gpus) and options.accelerator_type is not None:
        properties["guestAccelerators"] = [
            {
                "acceleratorType": typed("acceleratorTypes", options.accelerator_type),
                "acceleratorCount": gpus,
            }
        ]
    return properties


def bulk_insert_body(
    workload: Workload,
    *,
    replicas: Sequence[int],
    machine_type: str,
    image: str,
    user_data: str | None,
    options: GcpOptions,
    network: str,
    subnetwork: str | None,
) -> dict[str, Any]:
    """The ``BulkInsertInstanceResource`` creating ``replicas`` by name from ``image``.

    ``minCount`` 1: Compute Engine creates as many of them as fit, up to
    ``count``, and fails the others ("The minimum number of instances to
    create", BulkInsertInstanceResource.min_count in compute_v1/types/compute.py),
    so a quota short of the request still gives the replicas it has room for.
    bulkInsert cannot label each instance, so the replica index lives in the
    name; nor can it boot from a snapshot (see :func:`insert_body`).
    """
    names = [replica_name(workload.name, r) for r in replicas]
    properties = _instance_properties(
        workload,
        labels=ownership_labels(workload),
        machine_type=machine_type,
        source=BootSource("image", image),
        disk_gb=disk_gib(workload.resources.disk),
        user_data=user_data,
        options=options,
        network=network,
        subnetwork=subnetwork,
        zone=None,
    )
    return {
        "count": str(len(names)),
        "minCount": "1",
        "perInstanceProperties": {name: {"name": name} for name in names},
        "instanceProperties": properties,
    }


def insert_body(
    workload: Workload,
    *,
    replica: int,
    machine_type: str,
    snapshot: BootSource,
    snapshot_gb: int,
    user_data: str | None,
    options: GcpOptions,
    zone: str,
    network: str,
    subnetwork: str | None,
) -> dict[str, Any]:
    """The ``Instance`` of ``instances.insert`` making one replica boot from ``snapshot``.

    bulkInsert cannot: "You can't use a snapshot to create the boot disks for
    the VMs. Instead, use a custom image when you create VMs in bulk"
    (https://cloud.google.com/compute/docs/instances/multiple/about-bulk-creation,
    Limitations; also AttachedDiskInitializeParams.source_snapshot), so a
    clone is one insert per replica, which labels each instance with its
    replica. The boot disk is ``resources.disk`` or the snapshot's source
    disk size when that is larger: a disk from a snapshot cannot be smaller
    than it (Disk.size_gb).
    """
    properties = _instance_properties(
        workload,
        labels=ownership_labels(workload, replica),
        machine_type=machine_type,
        source=snapshot,
        disk_gb=max(disk_gib(workload.resources.disk), snapshot_gb),
        user_data=user_data,
        options=options,
        network=network,
        subnetwork=subnetwork,
        zone=zone,
    )
    return {"name": replica_name(workload.name, replica), **properties}


def firewall_body(
    workload: Workload, *, network: str, source_ranges: Sequence[str]
) -> dict[str, Any] | None:
    """The workload's ingress rule: the declared ports (22/tcp only with an SSH
    key) from ``source_ranges`` to instances tagged ``vmkit-<workload>``; None
    when nothing is to be opened."""
    opened: dict[str, set[int]] = {}
    for port in workload.ports:
        opened.setdefault(port.protocol, set()).add(port.port)
    if workload.ssh_public_key is not None:
        opened.setdefault("tcp", set()).add(22)
    if not opened:
        return None
    name = firewall_name(workload.name)
    return {
        "name": name,
        "description": _firewall_description(workload.name),
        "network": f"global/networks/{network}",
        "direction": "INGRESS",
        "priority": 1000,
        "allowed": [
            {"IPProtocol": proto, "ports": [str(p) for p in sorted(opened[proto])]}
            for proto in sorted(opened)
        ],
        "sourceRanges": list(source_ranges),
        "targetTags": [name],
    }


def firewall_owner(rule: Mapping[str, Any]) -> str | None:
    """The workload whose rule this is, when vmkit made it (the name, the
    description and the target tag :func:`firewall_body` gives); else None."""
    name = str(rule.get("name") or "")
    prefix = firewall_name("")
    if not name.startswith(prefix):
        return None
    workload = name[len(prefix) :]
    made = rule.get("description") == _firewall_description(workload) and list(
        rule.get("targetTags") or []
    ) == [name]
    return workload if workload and made else None


def firewall_differs(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """True when ``existing`` lets in anything else than ``wanted`` (or less)."""

    def opened(rule: Mapping[str, Any]) -> set[tuple[str, str]]:
        return {
            (str(a.get("IPProtocol", "")).lower(), str(p))
            for a in rule.get("allowed") or []
            for p in a.get("ports") or ["*"]
        }

    return (
        opened(existing) != opened(wanted)
        or bool(existing.get("denied"))
        or set(existing.get("sourceRanges") or []) != set(wanted["sourceRanges"])
        or set(existing.get("targetTags") or []) != set(wanted["targetTags"])
        or bool(existing.get("sourceTags"))
        or bool(existing.get("targetServiceAccounts"))
        or bool(existing.get("disabled"))
        or last_segment(existing.get("network")) != last_segment(wanted["network"])
        or existing.get("direction", "INGRESS") != "INGRESS"
    )


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The user's labels: everything but vmkit's own ``vmkit-`` keys."""
    return {k: v for k, v in labels.items() if not k.startswith("vmkit-")}


def _replica(name: str, workload: str, labels: Mapping[str, str]) -> int | None:
    value = labels.get(REPLICA_TAG)
    if value is not None and value.isdigit():
        return int(value)
    prefix = f"{workload}-"
    if workload and name.startswith(prefix) and name[len(prefix) :].isdigit():
        suffix = name[len(prefix) :]
        if suffix == str(int(suffix)):
            return int(suffix)
    return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def boot_disk(instance: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The instance's boot ``AttachedDisk``, if any."""
    for disk in instance.get("disks") or []:
        if disk.get("boot"):
            return dict(disk)
    return None


def to_machine(instance: Mapping[str, Any]) -> Machine:
    """An ``Instance`` (REST JSON) -> Machine; the replica comes from the name."""
    labels = {str(k): str(v) for k, v in (instance.get("labels") or {}).items()}
    name = str(instance.get("name", ""))
    workload = labels.get(WORKLOAD_TAG, "")
    nics = instance.get("networkInterfaces") or []
    nic = nics[0] if nics else {}
    access = (nic.get("accessConfigs") or [{}])[0]
    metadata = {
        str(i.get("key")): str(i.get("value", ""))
        for i in (instance.get("metadata") or {}).get("items") or []
    }
    return Machine(
        id=str(instance["id"]),
        name=name,
        provider="gcp",
        kind="vm",
        workload=workload,
        replica=_replica(name, workload, labels),
        state=STATES.get(str(instance.get("status", "")), MachineState.UNKNOWN),
        size=last_segment(instance.get("machineType")) or None,
        image=metadata.get(IMAGE_METADATA_KEY),
        location=last_segment(instance.get("zone")) or None,
        private_ip=nic.get("networkIP") or None,
        public_ip=access.get("natIP") or None,
        labels=user_labels(labels),
        created_at=_timestamp(instance.get("creationTimestamp")),
        spec_hash=labels.get(SPEC_TAG),
        raw=dict(instance),
    )


def snapshot_resource_name(machine_name: str, name: str, suffix: str) -> str:
    """A project-unique snapshot name from the machine's and the user's: lowercase,
    ``[-a-z0-9]``, at most 63 characters, ending with ``suffix``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    head = f"{machine_name}-{slug}" if slug else machine_name
    head = head[: 62 - len(suffix)].rstrip("-")
    return f"{head}-{suffix}"


def snapshot_labels(machine: Machine) -> dict[str, str]:
    """The labels of a snapshot vmkit takes of ``machine``: its workload, its id
    and, when it has one, its replica index."""
    labels = {WORKLOAD_TAG: machine.workload, MACHINE_LABEL: machine.id}
    if machine.replica is not None:
        labels[REPLICA_TAG] = str(machine.replica)
    return labels


def to_snapshot(snapshot: Mapping[str, Any]) -> Snapshot:
    """A ``Snapshot`` vmkit made (REST JSON) -> Snapshot; its id is its resource name
    and its name the one the user gave (kept in ``description``). ``size`` is
    ``diskSizeGb``, the size of the disk it copies (Snapshot reference); the
    replica comes from the ``vmkit-replica`` label."""
    labels = {str(k): str(v) for k, v in (snapshot.get("labels") or {}).items()}
    replica = labels.get(REPLICA_TAG, "")
    size = str(snapshot.get("diskSizeGb") or "")
    return Snapshot(
        id=str(snapshot["name"]),
        name=str(snapshot.get("description") or snapshot["name"]),
        provider="gcp",
        workload=labels.get(WORKLOAD_TAG, ""),
        machine_id=labels.get(MACHINE_LABEL),
        state=str(snapshot.get("status", "unknown")).lower(),
        created_at=_timestamp(snapshot.get("creationTimestamp")),
        size=int(size) if size.isdigit() and int(size) > 0 else None,
        replica=int(replica) if replica.isdigit() else None,
        labels=user_labels(labels),
        raw=dict(snapshot),
    )
