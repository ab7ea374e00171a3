"""Managed snapshots of OS disks, restore by swapping a VM's OS disk, and the lookup of
the snapshot a clone is made from."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound, ProviderError, SpecError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.azure import disk_shapes as ds
from vmkit.providers.azure import translate as tr
from vmkit.providers.azure.errors import azure_error_code
from vmkit.providers.azure.network import as_dict

if TYPE_CHECKING:
    from vmkit.providers.azure.provider import AzureProvider

__all__ = ["Disks"]

log = logging.getLogger(__name__)

# Compute's answer to deleting a disk still attached to a VM ("Disk X is attached to VM
# Y.", ansible/ansible#54644): for a moment after a swap the old disk may still say so.
ATTACHED_CODE = "OperationNotAllowed"


class Disks:
    """Snapshots, restores and clone sources, through the provider's retried, counted
    calls."""

    def __init__(self, provider: AzureProvider) -> None:
        self._p = provider

    # ------------------------------------------------------------- snapshots

    def snapshot(self, machine: Machine, name: str) -> Snapshot:
        """An incremental snapshot of the machine's OS disk (taken while it runs, as
        Azure allows), tagged with its workload, replica, machine and name."""
        disk_id = _os_disk_id(machine)
        snap_name = tr.safe_name(f"{machine.name}-{name}", 71) + f"-{uuid.uuid4().hex[:8]}"
        body = ds.snapshot_body(machine, name, disk_id, self._p.location, machine.labels)
        created = self._p._lro(
            "compute:CreateSnapshot",
            self._p.clients.compute.snapshots.begin_create_or_update,
            self._p.resource_group,
            snap_name,
            body,
        )
        return ds.to_snapshot(as_dict(created))

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
                mine.append(ds.to_snapshot(snap))
        return mine

    def delete(self, snapshot_id: str) -> None:
        """Delete a vmkit snapshot. Idempotent; NotFound for one vmkit did not make."""
        parsed = ds.snapshot_ref(snapshot_id)
        if parsed is None:
            raise NotFound(f"{snapshot_id} is not an Azure snapshot id", provider="azure")
        try:
            found = self._read_snapshot(parsed)
        except NotFound:
            return
        if WORKLOAD_TAG not in (found.get("tags") or {}):
            raise NotFound(f"{snapshot_id} is not a vmkit snapshot", provider="azure")
        self._p._lro(
            "compute:DeleteSnapshot",
            self._p.clients.compute.snapshots.begin_delete,
            parsed.resource_group,
            parsed.name,
        )

    def _read_snapshot(self, parsed: tr.ArmId) -> dict[str, Any]:
        return as_dict(
            self._p._call(
                "compute:GetSnapshot",
                self._p.clients.compute.snapshots.get,
                parsed.resource_group,
                parsed.name,
            )
        )

    def clone_source(self, os_image: str) -> dict[str, Any]:
        """The snapshot a workload's ``os_image`` names, read (never changed) for a plan.

        Raises SpecError naming ``os_image`` when it does not exist or lies in another
        region: a disk is copied from a snapshot of its own region only."""
        parsed = ds.snapshot_ref(os_image)
        if parsed is None:
            raise SpecError("os_image", f"{os_image!r} is not the id of an Azure snapshot")
        try:
            snapshot = self._read_snapshot(parsed)
        except NotFound as exc:
            raise SpecError(
                "os_image", f"no snapshot {os_image}: it was deleted or never existed"
            ) from exc
        where = str(snapshot.get("location") or "").replace(" ", "").lower()
        if where and where != self._p.location:
            raise SpecError(
                "os_image",
                f"snapshot {parsed.name} is in {where}; machines are made in "
                f"{self._p.location}, and Azure copies a snapshot to disks of its own region",
            )
        return snapshot

    # --------------------------------------------------------------- restore

    def restore(self, machine: Machine, snapshot: Snapshot) -> None:
        """Make a disk from the snapshot, deallocate the VM, swap the disk in as its OS
        disk (a PATCH of ``storageProfile.osDisk.managedDisk.id``), start the VM, then
        delete the old disk.

        The VM keeps its vmId, name, tags and NIC (so its addresses): only its OS disk
        changes. The new disk takes the old one's tags, storage type, zone and size (or
        the snapshot's, if larger) and is deleted with the VM (``deleteOption`` Delete).
        Deallocating first follows the swap as Azure first documented it ("The VM does
        need to be stopped\\deallocated", os-disk-swap.md of MicrosoftDocs/azure-docs,
        2018); the current article makes it optional, and a VM must reboot to boot
        another disk anyway. A restore that fails part-way puts the old disk back (when
        the swap happened), deletes the new disk and starts the VM again if it ran
        before, then raises the error. Raises NotFound when the snapshot is gone, before
        anything changes.
        """
        compute, rg = self._p.clients.compute, self._p.resource_group
        parsed = ds.snapshot_ref(snapshot.id)
        if parsed is None:
            raise NotFound(f"{snapshot.id} is not an Azure snapshot id", provider="azure")
        source = self._read_snapshot(parsed)
        current = self._p._get(machine.id)
        old_id = _os_disk_id(current)
        old_disk = as_dict(
            self._p._call("compute:GetDisk", compute.disks.get, rg, _arm_name(old_id))
        )
        new_name = tr.safe_name(f"{current.name}-osdisk", 71) + f"-{uuid.uuid4().hex[:8]}"
        body = ds.restored_disk_body(old_disk, source, current, self._p.location)
        was_running = current.state in (MachineState.RUNNING, MachineState.PENDING)
        try:
            # Made while the VM still runs: the VM is down only for the swap itself.
            new_disk = as_dict(
                self._p._lro(
                    "compute:CreateDisk", compute.disks.begin_create_or_update, rg, new_name, body
                )
            )
            new_id = str(
                new_disk.get("id") or tr.arm_id(self._p.subscription_id, rg, tr.DISK_TYPE, new_name)
            )
            if not _deallocated_view(dict(current.raw)):
                self._power(
                    "compute:DeallocateVM", compute.virtual_machines.begin_deallocate, current
                )
            self._swap(current, new_id, new_name, "Delete")
            self._power("compute:StartVM", compute.virtual_machines.begin_start, current)
        except ProviderError:
            self._undo(current, old_id, new_name, was_running)
            raise
        self._delete_old_disk(current, _arm_name(old_id))

    def _power(self, operation: str, begin: Any, machine: Machine) -> None:
        self._p._lro(operation, begin, self._p.resource_group, machine.name)

    def _swap(self, machine: Machine, disk_id: str, disk_name: str, delete_option: str) -> None:
        """PATCH the VM's OS disk to ``disk_id`` (VirtualMachineUpdate; only the OS disk is
        sent, so nothing else of the VM is rewritten: Azure/azure-sdk-for-net#37285 swaps
        this way). ``createOption`` is sent unchanged: Compute refuses a change of it
        (PropertyChangeNotAllowed, Azure/azure-powershell#7621)."""
        recorded = _recorded_os_disk(machine)
        os_disk: dict[str, Any] = {
            "name": disk_name,
            "managedDisk": {"id": disk_id},
            "deleteOption": delete_option,
        }
        for key in ("createOption", "osType"):
            if recorded.get(key):
                os_disk[key] = recorded[key]
        self._p._lro(
            "compute:UpdateVM",
            self._p.clients.compute.virtual_machines.begin_update,
            self._p.resource_group,
            machine.name,
            {"properties": {"storageProfile": {"osDisk": os_disk}}},
        )

    def _undo(self, machine: Machine, old_id: str, new_name: str, was_running: bool) -> None:
        """After a failed restore: the VM back on its old disk, the new disk deleted, the VM
        started if it ran before. Best effort: the restore's own error is what the caller
        raises, so what cannot be undone is logged."""
        compute, rg = self._p.clients.compute, self._p.resource_group
        deallocated = True
        try:
            vm = as_dict(
                self._p._call(
                    "compute:GetVM",
                    compute.virtual_machines.get,
                    rg,
                    machine.name,
                    expand="instanceView",
                )
            )
            deallocated = _deallocated_view(vm)
            attached = _os_disk_ref(vm)
            if attached is not None and attached.lower() != old_id.lower():
                # The swap went through (or its answer was lost): swap back.
                if not deallocated:
                    self._power(
                        "compute:DeallocateVM", compute.virtual_machines.begin_deallocate, machine
                    )
                    deallocated = True
                recorded = _recorded_os_disk(machine)
                option = str(recorded.get("deleteOption") or "Delete")
                self._swap(machine, old_id, _arm_name(old_id), option)
        except ProviderError as exc:
            log.warning("azure: %s: could not put its old OS disk back: %s", machine.name, exc)
        try:
            self._p._lro("compute:DeleteDisk", compute.disks.begin_delete, rg, new_name)
        except NotFound:
            pass
        except ProviderError as exc:
            log.warning("azure: could not delete the unused disk %s: %s", new_name, exc)
        if was_running and deallocated:
            try:
                self._power("compute:StartVM", compute.virtual_machines.begin_start, machine)
            except ProviderError as exc:
                log.warning("azure: %s: could not start it again: %s", machine.name, exc)

    def _delete_old_disk(self, machine: Machine, name: str) -> None:
        """Delete the disk the swap detached (billed until deleted). Azure may report it
        attached for a moment after the swap: that answer is retried until the
        provider's timeout. Raises ProviderError saying the machine was restored and
        naming the disk left behind when it cannot be deleted."""
        deadline = time.monotonic() + self._p.timeout
        while True:
            try:
                self._p._lro(
                    "compute:DeleteDisk",
                    self._p.clients.compute.disks.begin_delete,
                    self._p.resource_group,
                    name,
                )
                return
            except NotFound:
                return
            except ProviderError as exc:
                if azure_error_code(exc) != ATTACHED_CODE or time.monotonic() >= deadline:
                    raise ProviderError(
                        f"{machine.name} was restored, but its old OS disk {name} could not be "
                        f"deleted and is still billed: {exc}",
                        provider="azure",
                        operation="compute:DeleteDisk",
                    ) from exc
            time.sleep(self._p.poll_interval)


def _os_disk_ref(vm: dict[str, Any]) -> str | None:
    props = vm.get("properties") or {}
    managed = ((props.get("storageProfile") or {}).get("osDisk") or {}).get("managedDisk") or {}
    disk_id = managed.get("id")
    return str(disk_id) if disk_id else None


def _os_disk_id(machine: Machine) -> str:
    disk_id = _os_disk_ref(dict(machine.raw))
    if not disk_id or tr.parse_id(disk_id) is None:
        raise ProviderError(f"{machine.name} has no managed OS disk", provider="azure")
    return disk_id


def _arm_name(resource_id: str) -> str:
    parsed = tr.parse_id(resource_id)
    return parsed.name if parsed is not None else resource_id.rsplit("/", 1)[-1]


def _deallocated_view(vm: dict[str, Any]) -> bool:
    view = (vm.get("properties") or {}).get("instanceView") or {}
    return any(
        str(s.get("code") or "").lower() == "powerstate/deallocated"
        for s in view.get("statuses") or []
    )


def _recorded_os_disk(machine: Machine) -> dict[str, Any]:
    props = machine.raw.get("properties") or {}
    return dict((props.get("storageProfile") or {}).get("osDisk") or {})
