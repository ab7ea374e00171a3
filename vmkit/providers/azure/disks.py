"""Managed snapshots of OS disks, and restore by swapping a VM's OS disk."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound, ProviderError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.azure import translate as tr
from vmkit.providers.azure.network import as_dict

if TYPE_CHECKING:
    from vmkit.providers.azure.provider import AzureProvider

__all__ = ["Disks"]

log = logging.getLogger(__name__)


class Disks:
    """Snapshots and restores, through the provider's retried, counted calls."""

    def __init__(self, provider: AzureProvider) -> None:
        self._p = provider

    def snapshot(self, machine: Machine, name: str) -> Snapshot:
        """An incremental snapshot of the machine's OS disk (taken while it runs, as
        Azure allows), tagged with its workload, machine and name."""
        disk_id = _os_disk_id(machine)
        snap_name = tr.safe_name(f"{machine.name}-{name}", 71) + f"-{uuid.uuid4().hex[:8]}"
        body = tr.snapshot_body(machine, name, disk_id, self._p.location, machine.labels)
        created = self._p._lro(
            "compute:CreateSnapshot",
            self._p.clients.compute.snapshots.begin_create_or_update,
            self._p.resource_group,
            snap_name,
            body,
        )
        return tr.to_snapshot(as_dict(created))

    def snapshots(self, workload: str | None) -> list[Snapshot]:
        """The group's snapshots that carry a vmkit workload tag (of ``workload``)."""
        try:
            found = self._p._paged(
                "compute:ListSnapshots",
                self._p.clients.compute.snapshots.list_by_resource_group,
                self._p.resource_group,
            )
        except NotFound:
            return []
        mine = []
        for snap in found:
            owner = (snap.get("tags") or {}).get(WORKLOAD_TAG)
            if owner is not None and (workload is None or owner == workload):
                mine.append(tr.to_snapshot(snap))
        return mine

    def delete(self, snapshot_id: str) -> None:
        """Delete a vmkit snapshot. Idempotent; NotFound for one vmkit did not make."""
        parsed = tr.parse_id(snapshot_id)
        if parsed is None or parsed.provider_type.lower() != tr.SNAPSHOT_TYPE.lower():
            raise NotFound(f"{snapshot_id} is not an Azure snapshot id", provider="azure")
        snapshots = self._p.clients.compute.snapshots
        try:
            found = as_dict(
                self._p._call(
                    "compute:GetSnapshot", snapshots.get, parsed.resource_group, parsed.name
                )
            )
        except NotFound:
            return
        if WORKLOAD_TAG not in (found.get("tags") or {}):
            raise NotFound(f"{snapshot_id} is not a vmkit snapshot", provider="azure")
        self._p._lro(
            "compute:DeleteSnapshot", snapshots.begin_delete, parsed.resource_group, parsed.name
        )

    def restore(self, machine: Machine, snapshot: Snapshot) -> None:
        """Deallocate, make a disk from the snapshot, swap it in as the OS disk, start,
        then delete the old disk.

        The VM keeps its id, name, NIC and tags; the new disk takes the old one's tags,
        storage type and size (or the snapshot's, if larger) and is deleted with the VM.
        If the swap fails, the new disk is deleted before raising.
        """
        compute, rg = self._p.clients.compute, self._p.resource_group
        parsed = tr.parse_id(snapshot.id)
        if parsed is None:
            raise NotFound(f"{snapshot.id} is not an Azure snapshot id", provider="azure")
        current = self._p._get(machine.id)
        if current.state != MachineState.STOPPED or not _deallocated(current):
            self._p._lro(
                "compute:DeallocateVM", compute.virtual_machines.begin_deallocate, rg, current.name
            )
        old_name = _os_disk_name(current)
        old_disk = as_dict(self._p._call("compute:GetDisk", compute.disks.get, rg, old_name))
        new_name = tr.safe_name(f"{current.name}-osdisk", 71) + f"-{uuid.uuid4().hex[:8]}"
        new_body: dict[str, Any] = {
            "location": self._p.location,
            "tags": dict(old_disk.get("tags") or {WORKLOAD_TAG: current.workload}),
            "sku": {"name": (old_disk.get("sku") or {}).get("name") or "StandardSSD_LRS"},
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": snapshot.id},
                "diskSizeGB": (old_disk.get("properties") or {}).get("diskSizeGB"),
            },
        }
        new_disk = as_dict(
            self._p._lro(
                "compute:CreateDisk", compute.disks.begin_create_or_update, rg, new_name, new_body
            )
        )
        vm = as_dict(self._p._call("compute:GetVM", compute.virtual_machines.get, rg, current.name))
        os_disk = vm["properties"]["storageProfile"]["osDisk"]
        os_disk.update(
            {
                "name": new_name,
                "managedDisk": {
                    "id": new_disk.get("id")
                    or tr.arm_id(self._p.subscription_id, rg, tr.DISK_TYPE, new_name)
                },
                "deleteOption": "Delete",
            }
        )
        os_disk.pop("diskSizeGB", None)
        try:
            self._p._lro(
                "compute:UpdateVM",
                compute.virtual_machines.begin_create_or_update,
                rg,
                current.name,
                vm,
            )
        except ProviderError:
            try:
                self._p._lro("compute:DeleteDisk", compute.disks.begin_delete, rg, new_name)
            except ProviderError as cleanup:
                log.warning("azure: could not delete the unused disk %s: %s", new_name, cleanup)
            raise
        self._p._lro("compute:StartVM", compute.virtual_machines.begin_start, rg, current.name)
        # The old disk was detached by the swap; it may take a moment to show Unattached.
        deadline = time.monotonic() + self._p.timeout
        while True:
            try:
                self._p._lro("compute:DeleteDisk", compute.disks.begin_delete, rg, old_name)
                return
            except NotFound:
                return
            except ProviderError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(self._p.poll_interval)


def _os_disk_id(machine: Machine) -> str:
    props = machine.raw.get("properties") or {}
    managed = ((props.get("storageProfile") or {}).get("osDisk") or {}).get("managedDisk") or {}
    disk_id = managed.get("id")
    if not disk_id or tr.parse_id(str(disk_id)) is None:
        raise ProviderError(f"{machine.name} has no managed OS disk", provider="azure")
    return str(disk_id)


def _os_disk_name(machine: Machine) -> str:
    parsed = tr.parse_id(_os_disk_id(machine))
    assert parsed is not None  # _os_disk_id checked it
    return parsed.name


def _deallocated(machine: Machine) -> bool:
    view = (machine.raw.get("properties") or {}).get("instanceView") or {}
    return any(
        str(s.get("code") or "").lower() == "powerstate/deallocated"
        for s in view.get("statuses") or []
    )
