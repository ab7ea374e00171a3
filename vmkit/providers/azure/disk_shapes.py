"""Pure functions between vmkit's snapshots and the REST shapes of Azure's managed
snapshots and disks, and of a VM that boots a disk made from a snapshot (a clone).

Nothing here calls Azure. Shapes: Snapshot, Disk, CreationData and VirtualMachine of the
Compute REST reference (https://learn.microsoft.com/rest/api/compute/snapshots,
https://learn.microsoft.com/rest/api/compute/disks).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

from vmkit.machine import Machine, Snapshot
from vmkit.provider import REPLICA_TAG, WORKLOAD_TAG, ownership_labels
from vmkit.providers.azure import translate as tr
from vmkit.spec import Workload

__all__ = [
    "TAG_VALUE_LIMIT",
    "USER_DATA_LIMIT",
    "clone_disk_body",
    "clone_vm_body",
    "restored_disk_body",
    "snapshot_body",
    "snapshot_ref",
    "to_snapshot",
]

# Tag names take up to 512 characters, values up to 256
# (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations).
TAG_VALUE_LIMIT = 256
# User data: "The contents should be base64 encoded before passed to the API. The size
# can't exceed 64 KB." (learn.microsoft.com/azure/virtual-machines/user-data)
USER_DATA_LIMIT = 65536


def snapshot_ref(os_image: str) -> tr.ArmId | None:
    """The parts of ``os_image`` when it is the ARM id of a managed snapshot (a vmkit
    snapshot id), else None."""
    parsed = tr.parse_id(os_image)
    if parsed is None or parsed.child_type is not None:
        return None
    return parsed if parsed.provider_type.lower() == tr.SNAPSHOT_TYPE.lower() else None


# ----------------------------------------------------------------- snapshots


def snapshot_body(
    machine: Machine, name: str, disk_id: str, location: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """An incremental managed snapshot of ``disk_id``, tagged with the machine's workload,
    replica, id and the snapshot's vmkit name, and the user's labels."""
    tags = dict(labels)
    tags.update(
        {WORKLOAD_TAG: machine.workload, tr.MACHINE_TAG: machine.id, tr.SNAPSHOT_NAME_TAG: name}
    )
    if machine.replica is not None:
        tags[REPLICA_TAG] = str(machine.replica)
    return {
        "location": location,
        "tags": tags,
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": disk_id},
            "incremental": True,
        },
    }


def to_snapshot(snapshot: Mapping[str, Any]) -> Snapshot:
    """A Snapshot vmkit made (REST JSON) -> Snapshot; its id is the ARM id, its
    ``machine_id`` the vmId of the VM it was taken of, its ``replica`` that VM's (from
    the snapshot's own tags), its ``size`` ``properties.diskSizeGB``."""
    tags = {str(k): str(v) for k, v in (snapshot.get("tags") or {}).items()}
    props = snapshot.get("properties") or {}
    size = props.get("diskSizeGB")
    return Snapshot(
        id=str(snapshot["id"]),
        name=tags.get(tr.SNAPSHOT_NAME_TAG) or str(snapshot.get("name")),
        provider="azure",
        workload=tags.get(WORKLOAD_TAG, ""),
        machine_id=tags.get(tr.MACHINE_TAG),
        state=str(props.get("provisioningState") or "unknown"),
        created_at=tr.parse_timestamp(props.get("timeCreated")),
        size=int(size) if isinstance(size, int | float) and size > 0 else None,
        replica=tr.parse_replica(tags.get(REPLICA_TAG)),
        labels=tr.user_labels(tags),
        raw=dict(snapshot),
    )


def restored_disk_body(
    old_disk: Mapping[str, Any], snapshot: Mapping[str, Any], machine: Machine, location: str
) -> dict[str, Any]:
    """The disk a restore swaps in: a copy of ``snapshot`` with the old OS disk's tags,
    storage type and zone, and its size (or the snapshot's when larger: a disk cannot be
    made smaller than its source). It also carries the machine's workload and replica
    tags, so that ``gc`` finds it if a restore is cut short before the swap."""
    tags = {str(k): str(v) for k, v in (old_disk.get("tags") or {}).items()}
    tags[WORKLOAD_TAG] = machine.workload
    if machine.replica is not None:
        tags[REPLICA_TAG] = str(machine.replica)
    old_size = (old_disk.get("properties") or {}).get("diskSizeGB")
    snap_size = (snapshot.get("properties") or {}).get("diskSizeGB")
    sizes = [int(s) for s in (old_size, snap_size) if isinstance(s, int | float) and s > 0]
    properties: dict[str, Any] = {
        "creationData": {"createOption": "Copy", "sourceResourceId": str(snapshot["id"])},
    }
    if sizes:
        properties["diskSizeGB"] = max(sizes)
    body: dict[str, Any] = {
        "location": location,
        "tags": tags,
        "sku": {"name": (old_disk.get("sku") or {}).get("name") or tr.OS_DISK_SKU},
        "properties": properties,
    }
    if old_disk.get("zones"):
        body["zones"] = list(old_disk["zones"])
    return body


# -------------------------------------------------------------------- clones


def clone_disk_body(
    workload: Workload, replica: int, location: str, snapshot: Mapping[str, Any]
) -> dict[str, Any]:
    """The OS disk of one replica of a clone: a copy of ``snapshot`` (``createOption``
    Copy), tagged like the replica. ``diskSizeGB`` only when ``resources.disk`` asks for
    more than the snapshot holds; otherwise the disk takes the snapshot's size."""
    properties: dict[str, Any] = {
        "creationData": {"createOption": "Copy", "sourceResourceId": str(snapshot["id"])},
    }
    wanted = max(1, math.ceil(workload.resources.disk / 2**30))
    held = (snapshot.get("properties") or {}).get("diskSizeGB")
    if not isinstance(held, int | float) or wanted > held:
        properties["diskSizeGB"] = wanted
    return {
        "location": location,
        "tags": ownership_labels(workload, replica),
        "sku": {"name": tr.OS_DISK_SKU},
        "properties": properties,
    }


def clone_vm_body(
    workload: Workload,
    replica: int,
    location: str,
    *,
    vm_size: str,
    snapshot: Mapping[str, Any],
    disk_id: str,
    user_data: str | None,
    nic_id: str,
) -> dict[str, Any]:
    """The VirtualMachine PUT body of one replica of a clone.

    Azure boots no VM from a snapshot directly: the documented way is a managed disk
    copied from it, attached as the OS disk of a new VM
    (https://learn.microsoft.com/azure/virtual-machines/scripts/create-vm-from-snapshot,
    azure-samples/azure-cli-samples virtual-machine/create-vm-from-snapshot). So the OS
    disk is ``createOption`` Attach of ``disk_id`` (deleted with the VM), with the
    snapshot's ``osType``, and there is no ``osProfile``: Compute refuses one with Attach
    ("Parameter 'osProfile' is not allowed."), the disk already holds an OS and its
    logins. The cloud-init text goes in ``userData`` instead of ``customData``: the VM
    reads it from the Instance Metadata Service, and cloud-init's Azure datasource uses
    it when there is no custom data (``crawl_metadata`` in
    cloudinit/sources/DataSourceAzure.py of canonical/cloud-init;
    https://learn.microsoft.com/azure/virtual-machines/user-data shows a VM with an
    Attach OS disk and ``userData``). The VM is tagged with the snapshot's id
    (:data:`translate.IMAGE_TAG`) for ``Machine.image`` when it fits in a tag value.
    """
    os_type = (snapshot.get("properties") or {}).get("osType") or "Linux"
    properties = tr.vm_properties(workload, vm_size=vm_size, nic_id=nic_id)
    properties["storageProfile"] = {
        "osDisk": {
            "name": tr.os_disk_name(tr.replica_name(workload.name, replica)),
            "createOption": "Attach",
            "osType": str(os_type),
            "caching": "ReadWrite",
            "managedDisk": {"id": disk_id},
            "deleteOption": "Delete",
        }
    }
    if user_data is not None:
        properties["userData"] = base64.b64encode(user_data.encode()).decode()
    tags = ownership_labels(workload, replica)
    if len(str(snapshot["id"])) <= TAG_VALUE_LIMIT:
        tags[tr.IMAGE_TAG] = str(snapshot["id"])
    return {"location": location, "tags": tags, "properties": properties}
