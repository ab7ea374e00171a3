"""Records -> compute v1 REST JSON, evaluated at one instant.

Field names and types follow the SDK's generated models
(google/cloud/compute_v1/types/compute.py: Instance, AttachedDisk,
NetworkInterface, Disk, Snapshot, Firewall, Image, MachineType, Operation);
int64 fields are JSON strings. The overall look (kind, fingerprints,
"Unknown CPU Platform" while not running, shieldedInstanceIntegrityPolicy)
follows real instances.get dumps.
"""

from __future__ import annotations

from typing import Any

from vmkit.testing.fakes.gce.catalog import MachineTypeSpec, cpu_platform
from vmkit.testing.fakes.gce.shapes import LINK_BASE, fingerprint, rfc3339
from vmkit.testing.fakes.gce.state import (
    Disk,
    Firewall,
    GceState,
    Image,
    Instance,
    Operation,
    Snapshot,
)

__all__ = [
    "disk_link",
    "instance_link",
    "render_disk",
    "render_firewall",
    "render_image",
    "render_instance",
    "render_machine_type",
    "render_operation",
    "render_snapshot",
    "zone_link",
]

#: statuses in which an instance holds its ephemeral external address
NAT_STATUSES = frozenset({"STAGING", "RUNNING", "STOPPING"})
GUEST_OS_FEATURES = [
    {"type": "VIRTIO_SCSI_MULTIQUEUE"},
    {"type": "UEFI_COMPATIBLE"},
    {"type": "GVNIC"},
]


def zone_link(project: str, zone: str) -> str:
    return f"{LINK_BASE}/projects/{project}/zones/{zone}"


def instance_link(project: str, zone: str, name: str) -> str:
    return f"{zone_link(project, zone)}/instances/{name}"


def disk_link(project: str, zone: str, name: str) -> str:
    return f"{zone_link(project, zone)}/disks/{name}"


def _nonempty(body: dict[str, Any], key: str, value: Any) -> None:
    # The API leaves out empty lists and maps rather than sending [] or {}.
    if value:
        body[key] = value


def render_instance(inst: Instance, now: float) -> dict[str, Any]:
    status = inst.timeline.at(now)
    zone = zone_link(inst.project, inst.zone)
    tags: dict[str, Any] = {"fingerprint": fingerprint(inst.tags)}
    _nonempty(tags, "items", list(inst.tags))
    metadata: dict[str, Any] = {
        "kind": "compute#metadata",
        "fingerprint": fingerprint(inst.metadata),
    }
    _nonempty(metadata, "items", [dict(i) for i in inst.metadata])
    body: dict[str, Any] = {
        "kind": "compute#instance",
        "id": inst.id,
        "creationTimestamp": rfc3339(inst.created),
        "name": inst.name,
        "description": inst.extra.get("description", ""),
        "tags": tags,
        "machineType": f"{zone}/machineTypes/{inst.machine_type.name}",
        "status": status,
        "zone": zone,
        "canIpForward": bool(inst.extra.get("canIpForward", False)),
        "networkInterfaces": [_render_nic(nic, status) for nic in inst.nics],
        "disks": [_render_attached(inst, a) for a in inst.disks],
        "metadata": metadata,
        "selfLink": instance_link(inst.project, inst.zone, inst.name),
        "scheduling": dict(inst.scheduling),
        "cpuPlatform": (
            cpu_platform(inst.machine_type.name)
            if status in ("RUNNING", "STOPPING")
            else "Unknown CPU Platform"
        ),
        "labelFingerprint": fingerprint(inst.labels),
        "startRestricted": False,
        "deletionProtection": bool(inst.extra.get("deletionProtection", False)),
        "shieldedInstanceConfig": dict(inst.shielded),
        "shieldedInstanceIntegrityPolicy": {"updateAutoLearnPolicy": True},
        "fingerprint": fingerprint([inst.id, status, inst.labels, inst.metadata]),
    }
    _nonempty(body, "labels", dict(inst.labels))
    _nonempty(body, "guestAccelerators", [dict(a) for a in inst.accelerators])
    _nonempty(body, "serviceAccounts", inst.extra.get("serviceAccounts"))
    _nonempty(body, "hostname", inst.extra.get("hostname"))
    _nonempty(body, "minCpuPlatform", inst.extra.get("minCpuPlatform"))
    if inst.last_start is not None and inst.last_start <= now:
        body["lastStartTimestamp"] = rfc3339(inst.last_start)
    if inst.last_stop is not None and inst.last_stop <= now:
        body["lastStopTimestamp"] = rfc3339(inst.last_stop)
    return body


def _render_nic(nic: Any, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "compute#networkInterface",
        "network": nic.network,
        "subnetwork": nic.subnetwork,
        "networkIP": nic.ip,
        "name": nic.name,
        "fingerprint": fingerprint([nic.name, nic.ip]),
        "stackType": "IPV4_ONLY",
    }
    if nic.access is not None:
        access = {"kind": "compute#accessConfig", **nic.access}
        if nic.nat_ip and status in NAT_STATUSES:
            access["natIP"] = nic.nat_ip
        body["accessConfigs"] = [access]
    return body


def _render_attached(inst: Instance, attached: Any) -> dict[str, Any]:
    return {
        "kind": "compute#attachedDisk",
        "type": "PERSISTENT",
        "mode": attached.mode,
        "source": disk_link(inst.project, inst.zone, attached.disk),
        "deviceName": attached.device_name,
        "index": attached.index,
        "boot": attached.boot,
        "autoDelete": attached.auto_delete,
        "licenses": list(attached.licenses),
        "interface": attached.interface,
        "guestOsFeatures": GUEST_OS_FEATURES,
        "diskSizeGb": str(attached.size_gb),
        "architecture": attached.architecture,
    }


def render_disk(state: GceState, disk: Disk, now: float) -> dict[str, Any]:
    zone = zone_link(disk.project, disk.zone)
    body: dict[str, Any] = {
        "kind": "compute#disk",
        "id": disk.id,
        "creationTimestamp": rfc3339(disk.created),
        "name": disk.name,
        "sizeGb": str(disk.size_gb),
        "zone": zone,
        "status": disk.timeline.at(now),
        "selfLink": disk_link(disk.project, disk.zone, disk.name),
        "type": f"{zone}/diskTypes/{disk.disk_type}",
        "labelFingerprint": fingerprint(disk.labels),
        "physicalBlockSizeBytes": "4096",
        "architecture": disk.architecture,
        "guestOsFeatures": GUEST_OS_FEATURES,
    }
    _nonempty(body, "licenses", list(disk.licenses))
    _nonempty(body, "labels", dict(disk.labels))
    _nonempty(body, "sourceImage", disk.source_image)
    _nonempty(body, "sourceImageId", disk.source_image_id)
    _nonempty(body, "sourceSnapshot", disk.source_snapshot)
    _nonempty(body, "sourceSnapshotId", disk.source_snapshot_id)
    users = state.disk_users(disk)
    if users:
        body["users"] = [instance_link(i.project, i.zone, i.name) for i in users]
    if disk.last_attach is not None:
        body["lastAttachTimestamp"] = rfc3339(disk.last_attach)
    if disk.last_detach is not None:
        body["lastDetachTimestamp"] = rfc3339(disk.last_detach)
    return body


def render_snapshot(snap: Snapshot, now: float) -> dict[str, Any]:
    status = snap.timeline.at(now)
    body: dict[str, Any] = {
        "kind": "compute#snapshot",
        "id": snap.id,
        "creationTimestamp": rfc3339(snap.created),
        "name": snap.name,
        "description": snap.description,
        "status": status,
        "sourceDisk": snap.source_disk,
        "sourceDiskId": snap.source_disk_id,
        "diskSizeGb": str(snap.disk_size_gb),
        "storageBytes": str(snap.disk_size_gb * 2**28 if status == "READY" else 0),
        "storageBytesStatus": "UP_TO_DATE" if status == "READY" else "UPDATING",
        "selfLink": f"{LINK_BASE}/projects/{snap.project}/global/snapshots/{snap.name}",
        "labelFingerprint": fingerprint(snap.labels),
        "storageLocations": [snap.storage_location],
        "autoCreated": False,
        "architecture": snap.architecture,
        "snapshotType": "STANDARD",
    }
    _nonempty(body, "licenses", list(snap.licenses))
    _nonempty(body, "labels", dict(snap.labels))
    return body


def render_firewall(fw: Firewall) -> dict[str, Any]:
    return {
        "kind": "compute#firewall",
        "id": fw.id,
        "creationTimestamp": rfc3339(fw.created),
        "name": fw.name,
        **fw.body,
        "selfLink": f"{LINK_BASE}/projects/{fw.project}/global/firewalls/{fw.name}",
    }


def render_image(image: Image) -> dict[str, Any]:
    spec = image.spec
    link = f"{LINK_BASE}/projects/{spec.project}/global/images"
    body: dict[str, Any] = {
        "kind": "compute#image",
        "id": image.id,
        "creationTimestamp": spec.creation,
        "name": spec.name,
        "description": spec.description,
        "sourceType": "RAW",
        "status": "READY",
        "archiveSizeBytes": str(spec.disk_size_gb * 2**28),
        "diskSizeGb": str(spec.disk_size_gb),
        "licenses": [f"{LINK_BASE}/projects/{spec.project}/global/licenses/{spec.license}"],
        "family": spec.family,
        "selfLink": f"{link}/{spec.name}",
        "labelFingerprint": fingerprint(dict(spec.labels)),
        "guestOsFeatures": GUEST_OS_FEATURES,
        "storageLocations": ["eu", "asia", "us"],
        "architecture": spec.architecture,
    }
    _nonempty(body, "labels", dict(spec.labels))
    if spec.deprecated_by:
        body["deprecated"] = {"state": "DEPRECATED", "replacement": f"{link}/{spec.deprecated_by}"}
    return body


def render_machine_type(
    spec: MachineTypeSpec, project: str, zone: str, mt_id: str
) -> dict[str, Any]:
    memory_gb = spec.memory_mb / 1024
    body: dict[str, Any] = {
        "kind": "compute#machineType",
        "id": mt_id,
        # The real table shows the Unix epoch in Pacific time for every type.
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": spec.name,
        "description": f"{spec.guest_cpus} vCPUs, {memory_gb:g} GB RAM",
        "guestCpus": spec.guest_cpus,
        "memoryMb": spec.memory_mb,
        "imageSpaceGb": 0,
        "maximumPersistentDisks": 128,
        "maximumPersistentDisksSizeGb": "263168",
        # MachineType.zone is the zone *name*, not a link (compute.py: MachineType.zone).
        "zone": zone,
        "selfLink": f"{zone_link(project, zone)}/machineTypes/{spec.name}",
        "isSharedCpu": spec.shared_cpu,
        "architecture": spec.architecture,
    }
    if spec.accelerators:
        body["accelerators"] = [
            {"guestAcceleratorType": kind, "guestAcceleratorCount": count}
            for kind, count in spec.accelerators
        ]
    return body


def render_operation(op: Operation, now: float) -> dict[str, Any]:
    """The Operation shape of a real insert (CCExtractor/sample-platform#901):
    kind, decimal id, name, zone link, operationType, targetLink/targetId,
    status, user, progress, insertTime/startTime/endTime, selfLink and, once
    DONE with a failure, error.errors[{code, message, errorDetails}] plus
    httpErrorStatusCode/httpErrorMessage (GoogleCloudPlatform/ai-on-gke#849)."""
    status = op.status(now)
    scope = f"zones/{op.zone}" if op.zone else "global"
    body: dict[str, Any] = {
        "kind": "compute#operation",
        "id": op.id,
        "name": op.name,
        "operationType": op.op_type,
        "status": status,
        "user": op.user,
        "progress": 100 if status == "DONE" else 0,
        "insertTime": rfc3339(op.created),
        "selfLink": f"{LINK_BASE}/projects/{op.project}/{scope}/operations/{op.name}",
        "selfLinkWithId": f"{LINK_BASE}/projects/{op.project}/{scope}/operations/{op.id}",
    }
    if op.zone:
        body["zone"] = zone_link(op.project, op.zone)
    _nonempty(body, "targetLink", op.target_link)
    _nonempty(body, "targetId", op.target_id)
    _nonempty(body, "operationGroupId", op.group)
    if status != "PENDING":
        body["startTime"] = rfc3339(op.created + (op.done_at - op.created) / 2)
    if status == "DONE":
        body["endTime"] = rfc3339(op.done_at)
        if op.error is not None:
            error: dict[str, Any] = {"code": op.error.code, "message": op.error.message}
            _nonempty(error, "errorDetails", op.error.details)
            body["error"] = {"errors": [error]}
            body["httpErrorStatusCode"] = op.error.http_status
            body["httpErrorMessage"] = op.error.http_message
    if op.bulk is not None and op.zone:
        created = op.bulk["created"] if status == "DONE" else 0
        failed = op.bulk.get("failed", 0) if status == "DONE" else 0
        body["instancesBulkInsertOperationMetadata"] = {
            "perLocationStatus": {
                f"zones/{op.zone}": {
                    "status": "DONE" if status == "DONE" else "CREATING",
                    "targetVmCount": op.bulk["target"],
                    "createdVmCount": created,
                    "failedToCreateVmCount": failed,
                    "deletedVmCount": 0,
                }
            }
        }
    return body
