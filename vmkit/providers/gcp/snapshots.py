"""Snapshots of boot disks, and restoring a machine's boot disk from one.

Restore swaps the boot disk of the same instance (stop, ``disks.insert`` from
the snapshot, ``instances.detachDisk`` of the old boot disk,
``instances.attachDisk`` of the new one as boot, start, delete the old disk),
which Compute Engine documents for stopped instances
(https://cloud.google.com/compute/docs/disks/detach-reattach-boot-disk), so
the instance keeps its id, name, labels and metadata.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from typing import TYPE_CHECKING, Any

from google.cloud import compute_v1

from vmkit.errors import NotFound, ProviderError
from vmkit.machine import Machine, Snapshot
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.gcp import translate as tr

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["Snapshots"]

log = logging.getLogger(__name__)


class Snapshots:
    """Snapshot operations through the provider's retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def create(self, machine: Machine, name: str) -> Snapshot:
        """``disks.createSnapshot`` of the boot disk, labelled with the workload
        and the machine id; waits until the snapshot is READY."""
        current = self._p._get(machine.id)
        disk = tr.boot_disk(current.raw)
        if disk is None:
            raise ProviderError(f"{machine.name} has no boot disk", provider="gcp")
        resource_name = tr.snapshot_resource_name(machine.name, name, uuid.uuid4().hex[:8])
        snapshot = compute_v1.Snapshot(
            name=resource_name,
            description=name,
            labels={WORKLOAD_TAG: machine.workload, tr.MACHINE_LABEL: machine.id},
        )
        op = self._p._sdk(
            "compute:disks.createSnapshot",
            self._p.clients.disks.create_snapshot_unary,
            request_type=compute_v1.CreateSnapshotDiskRequest,
            project=self._p.project,
            zone=self._p.zone,
            disk=tr.last_segment(disk.get("source")),
            snapshot_resource=snapshot,
            request_id=str(uuid.uuid4()),
        )
        self._p.wait_operation(op, "compute:disks.createSnapshot", resource_name)
        return self.get(resource_name)

    def get(self, snapshot_id: str) -> Snapshot:
        """One snapshot by resource name. Raises NotFound."""
        found = self._p._sdk(
            "compute:snapshots.get",
            self._p.clients.snapshots.get,
            project=self._p.project,
            snapshot=snapshot_id,
        )
        return tr.to_snapshot(self._p.to_json(found))

    def list(self, workload: str | None) -> builtins.list[Snapshot]:
        """vmkit's snapshots (of one workload), one paginated list."""
        owner = (
            f'labels.{WORKLOAD_TAG} = "{workload}"'
            if workload is not None
            else f"labels.{WORKLOAD_TAG}:*"
        )
        request = compute_v1.ListSnapshotsRequest(project=self._p.project, filter=owner)
        listed = self._p._pages("compute:snapshots.list", self._p.clients.snapshots.list, request)
        return [tr.to_snapshot(self._p.to_json(s)) for s in listed]

    def delete(self, snapshot_id: str) -> None:
        """Delete a snapshot and wait until it is gone. Idempotent."""
        try:
            op = self._p._sdk(
                "compute:snapshots.delete",
                self._p.clients.snapshots.delete_unary,
                request_type=compute_v1.DeleteSnapshotRequest,
                project=self._p.project,
                snapshot=snapshot_id,
                request_id=str(uuid.uuid4()),
            )
            self._p.wait_operation(op, "compute:snapshots.delete", snapshot_id)
        except NotFound:
            return

    def restore(self, machine: Machine, snapshot: Snapshot) -> None:
        """Swap the machine's boot disk for a new disk made from ``snapshot``
        and start it. The old boot disk is deleted once the new one is attached;
        on a failure before that, the old disk is put back."""
        source = self.get(snapshot.id)
        current = self._p.stopped(self._p._get(machine.id))
        old = tr.boot_disk(current.raw)
        if old is None:
            raise ProviderError(f"{machine.name} has no boot disk", provider="gcp")
        old_name = tr.last_segment(old.get("source"))
        device = str(old.get("deviceName") or old_name)
        new_name = f"{machine.name}-{uuid.uuid4().hex[:8]}"
        size = max(int(old.get("diskSizeGb") or 0), int(source.raw.get("diskSizeGb") or 0))
        disk = compute_v1.Disk(
            name=new_name,
            source_snapshot=f"projects/{self._p.project}/global/snapshots/{source.id}",
            labels={WORKLOAD_TAG: machine.workload},
        )
        if size:
            disk.size_gb = size
        op = self._p._sdk(
            "compute:disks.insert",
            self._p.clients.disks.insert_unary,
            request_type=compute_v1.InsertDiskRequest,
            project=self._p.project,
            zone=self._p.zone,
            disk_resource=disk,
            request_id=str(uuid.uuid4()),
        )
        self._p.wait_operation(op, "compute:disks.insert", new_name)
        self._swap(current, device, old_name, new_name)
        self._p._start(current)
        try:
            self._delete_disk(old_name)
        except ProviderError as exc:
            log.warning("gcp: old boot disk %s of %s not deleted: %s", old_name, machine.name, exc)

    def _swap(self, machine: Machine, device: str, old_name: str, new_name: str) -> None:
        detached = False
        try:
            self._detach(machine, device)
            detached = True
            self._attach(machine, device, new_name)
        except BaseException:
            try:
                if detached:
                    self._attach(machine, device, old_name)
                self._delete_disk(new_name)
            except ProviderError as exc:
                # The original error is the one raised; this one is only reported.
                log.warning("gcp: restore of %s could not be undone: %s", machine.name, exc)
            raise

    def _detach(self, machine: Machine, device: str) -> None:
        op = self._p._instance_call(
            "detachDisk",
            self._p.clients.instances.detach_disk_unary,
            compute_v1.DetachDiskInstanceRequest,
            machine,
            device_name=device,
        )
        self._p.wait_operation(op, "compute:instances.detachDisk", machine.name)

    def _attach(self, machine: Machine, device: str, disk_name: str) -> None:
        attached = compute_v1.AttachedDisk(
            source=f"projects/{self._p.project}/zones/{self._p.zone}/disks/{disk_name}",
            boot=True,
            # Without it the disk would outlive the instance (AttachedDisk.auto_delete).
            auto_delete=True,
            device_name=device,
        )
        op = self._p._instance_call(
            "attachDisk",
            self._p.clients.instances.attach_disk_unary,
            compute_v1.AttachDiskInstanceRequest,
            machine,
            attached_disk_resource=attached,
        )
        self._p.wait_operation(op, "compute:instances.attachDisk", machine.name)

    def _delete_disk(self, name: str) -> Any:
        try:
            op = self._p._sdk(
                "compute:disks.delete",
                self._p.clients.disks.delete_unary,
                request_type=compute_v1.DeleteDiskRequest,
                project=self._p.project,
                zone=self._p.zone,
                disk=name,
                request_id=str(uuid.uuid4()),
            )
        except NotFound:
            return None
        return self._p.wait_operation(op, "compute:disks.delete", name)
