"""Snapshots of boot disks, restoring a machine's boot disk from one, and clone sources.

Restore swaps the boot disk of the same instance, which Compute Engine allows
only while the instance is stopped ("To detach the boot disk, the instance
must be in TERMINATED state", 400 ``invalidResourceUsage``;
https://cloud.google.com/compute/docs/disks/detach-reattach-boot-disk):

1. ``disks.insert`` of a disk from the snapshot, with the old boot disk's
   type and labels and at least its size, while the instance still runs
   (less downtime; a refusal here leaves the instance untouched);
2. ``instances.stop`` (a stopped instance is swapped as it is);
3. ``instances.detachDisk`` of the old boot disk (by its device name), which
   leaves that disk in the project, billed until deleted;
4. ``instances.attachDisk`` of the new disk as boot disk, same device name,
   ``autoDelete`` true (the API's default is false: the disk would outlive
   the instance, AttachedDisk.auto_delete);
5. ``instances.start``;
6. ``disks.delete`` of the old disk.

The instance keeps its id, name, labels and metadata, and its internal IP:
stopping keeps an instance's internal addresses, only an ephemeral external
IP is given back (https://cloud.google.com/compute/docs/instances/suspend-stop-reset-instances-overview,
"Stop an instance"; https://cloud.google.com/vpc/docs/ip-addresses). A
restore returns the machine running, whatever its state before: rolling a
machine back is asking for it to run from the snapshot.

When a step up to the start fails, the restore is undone from what the
instance shows: the new disk detached if it got attached, the old disk
attached again as boot disk if it is not, the new disk deleted, and the
instance started again if it was running. The original error is raised.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.cloud import compute_v1

from vmkit.errors import NotFound, ProviderError, SpecError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.gcp import translate as tr

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["Snapshots"]

log = logging.getLogger(__name__)

#: Snapshot.architecture values by vmkit arch (compute_v1/types/compute.py, Snapshot.Architecture).
_ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}
#: Machine states after which a restore starts the instance again on an undo.
_UP = frozenset({MachineState.RUNNING, MachineState.PENDING})


@dataclass(frozen=True)
class _Boot:
    """A boot disk as attached: its disk's name, device name and autoDelete."""

    name: str
    device: str
    auto_delete: bool

    @classmethod
    def of(cls, attached: Any) -> _Boot:
        name = tr.last_segment(attached.get("source"))
        return cls(name, str(attached.get("deviceName") or name), bool(attached.get("autoDelete")))


class Snapshots:
    """Snapshot operations through the provider's retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def create(self, machine: Machine, name: str) -> Snapshot:
        """``disks.createSnapshot`` of the boot disk, labelled with the workload,
        the machine id and its replica; waits until the snapshot is READY."""
        current = self._p._get(machine.id)
        disk = tr.boot_disk(current.raw)
        if disk is None:
            raise ProviderError(f"{machine.name} has no boot disk", provider="gcp")
        resource_name = tr.snapshot_resource_name(machine.name, name, uuid.uuid4().hex[:8])
        snapshot = compute_v1.Snapshot(
            name=resource_name,
            description=name,
            labels=tr.snapshot_labels(current),
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
        return tr.to_snapshot(self._read(self._p.project, snapshot_id))

    def _read(self, project: str, name: str) -> dict[str, Any]:
        found = self._p._sdk(
            "compute:snapshots.get",
            self._p.clients.snapshots.get,
            project=project,
            snapshot=name,
        )
        return self._p.to_json(found)

    def clone_source(self, source: tr.BootSource, arch: tr.Arch) -> int:
        """The size in GB of the READY snapshot ``source`` that a clone boots from.

        Read-only (one ``snapshots.get``). Raises SpecError naming ``os_image``
        when there is no such snapshot, when it is not READY, or when it was
        taken of a disk of the other architecture than ``options.gcp.arch``.
        """
        try:
            raw = self._read(source.project, source.name)
        except NotFound as exc:
            raise SpecError(
                "os_image",
                f"no snapshot {source.name!r} in project {source.project} (a bare name is a "
                "snapshot; images are named projects/<p>/global/images/...)",
            ) from exc
        status = str(raw.get("status") or "")
        if status != "READY":
            raise SpecError("os_image", f"snapshot {source.name!r} is {status}, not READY")
        architecture = str(raw.get("architecture") or "")
        if architecture in _ARCHITECTURES.values() and architecture != _ARCHITECTURES[arch]:
            raise SpecError(
                "os_image",
                f"snapshot {source.name!r} is of an {architecture} disk; set options.gcp.arch "
                "to match",
            )
        return int(raw.get("diskSizeGb") or 0)

    def list(self, workload: str | None) -> builtins.list[Snapshot]:
        """vmkit's snapshots (of one workload), one paginated list."""
        owner = tr.owner_filter(workload)
        request = compute_v1.ListSnapshotsRequest(project=self._p.project, filter=owner)
        listed = self._p._pages("compute:snapshots.list", self._p.clients.snapshots.list, request)
        return [tr.to_snapshot(self._p.to_json(s)) for s in listed]

    def delete(self, snapshot_id: str) -> None:
        """Delete a snapshot vmkit made and wait until it is gone. Idempotent;
        NotFound for a snapshot without vmkit's workload label (not ours to delete)."""
        try:
            labels = self._read(self._p.project, snapshot_id).get("labels") or {}
        except NotFound:
            return
        if WORKLOAD_TAG not in labels:
            raise NotFound(f"{snapshot_id} is not a vmkit snapshot", provider="gcp")
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
        """Put ``machine`` on a new boot disk made from ``snapshot`` and start it
        (see the module docstring for the steps and the undo). Raises NotFound
        for a snapshot that is gone, before anything changes."""
        source = self.get(snapshot.id)
        if source.state != "ready":
            raise ProviderError(
                f"snapshot {source.id} is {source.state}, not ready",
                provider="gcp",
                operation="restore",
            )
        current = self._p._get(machine.id)
        attached = tr.boot_disk(current.raw)
        if attached is None:
            raise ProviderError(f"{machine.name} has no boot disk", provider="gcp")
        old = _Boot.of(attached)
        new_name = f"{machine.name}-{uuid.uuid4().hex[:8]}"
        try:
            self._insert_disk(new_name, source, self._disk(old.name), machine.workload)
            stopped = self._p.stopped(current)
            self._detach(stopped, old.device)
            self._attach(stopped, old.device, new_name, auto_delete=True)
            self._p._start(stopped)
        except BaseException:
            self._undo(machine, old, new_name, restart=current.state in _UP)
            raise
        try:
            self._delete_disk(old.name)
        except ProviderError as exc:
            # The restore is done; the disk stays billed until gc deletes it.
            log.warning("gcp: old boot disk %s of %s not deleted: %s", old.name, machine.name, exc)

    def _disk(self, name: str) -> dict[str, Any]:
        found = self._p._sdk(
            "compute:disks.get",
            self._p.clients.disks.get,
            project=self._p.project,
            zone=self._p.zone,
            disk=name,
        )
        return self._p.to_json(found)

    def _insert_disk(self, name: str, source: Snapshot, old: dict[str, Any], workload: str) -> None:
        """A disk from ``source`` like the ``old`` boot disk: its type, its labels,
        its size unless the snapshot's is larger (a disk cannot be smaller than
        its snapshot, Disk.size_gb)."""
        labels = {str(k): str(v) for k, v in (old.get("labels") or {}).items()}
        labels.setdefault(WORKLOAD_TAG, workload)
        disk = compute_v1.Disk(
            name=name,
            source_snapshot=f"projects/{self._p.project}/global/snapshots/{source.id}",
            labels=labels,
        )
        if old.get("type"):
            disk.type_ = f"zones/{self._p.zone}/diskTypes/{tr.last_segment(old['type'])}"
        size = max(int(old.get("sizeGb") or 0), source.size or 0)
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
        self._p.wait_operation(op, "compute:disks.insert", name)

    def _undo(self, machine: Machine, old: _Boot, new_name: str, *, restart: bool) -> None:
        """Put ``machine`` back on its ``old`` boot disk, from what the instance
        shows now; delete the new disk; start the instance when it ran before.
        Best effort: the restore's own error is the one the caller sees."""
        try:
            current = self._p._get(machine.id)
            attached = tr.boot_disk(current.raw)
            boot = _Boot.of(attached) if attached is not None else None
            if boot is None or boot.name != old.name:
                current = self._p.stopped(current)
                if boot is not None:
                    self._detach(current, boot.device)
                self._attach(current, old.device, old.name, auto_delete=old.auto_delete)
            self._delete_disk(new_name)
            if restart and current.state not in _UP:
                self._p._start(self._p.stopped(current))
        except ProviderError as exc:
            log.warning("gcp: restore of %s could not be undone: %s", machine.name, exc)

    def _detach(self, machine: Machine, device: str) -> None:
        op = self._p._instance_call(
            "detachDisk",
            self._p.clients.instances.detach_disk_unary,
            compute_v1.DetachDiskInstanceRequest,
            machine,
            device_name=device,
        )
        self._p.wait_operation(op, "compute:instances.detachDisk", machine.name)

    def _attach(self, machine: Machine, device: str, disk_name: str, *, auto_delete: bool) -> None:
        attached = compute_v1.AttachedDisk(
            source=f"projects/{self._p.project}/zones/{self._p.zone}/disks/{disk_name}",
            boot=True,
            auto_delete=auto_delete,
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

    def _delete_disk(self, name: str) -> None:
        """Delete a disk and wait until it is gone; one already gone is fine."""
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
            return
        self._p.wait_operation(op, "compute:disks.delete", name)
