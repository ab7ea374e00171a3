"""What vmkit made on Compute Engine that no live instance owns, and deleting it.

vmkit makes, besides instances: the firewall rule ``vmkit-<workload>`` (a
workload's, shared by its instances), boot disks (deleted with their
instance: ``autoDelete``) and, during a restore, a disk from a snapshot that
replaces a boot disk (``vmkit-workload`` label). Left behind by a crash:

* a firewall rule of a workload that has no instance any more, in any zone
  of the project (the rule is global; another connection's zone may hold
  the workload's instances);
* a disk labelled ``vmkit-workload`` that no instance uses (``users`` is
  empty, Disk reference): a restore's new disk never attached, or an old boot
  disk detached but not deleted. While the workload has an instance, a disk
  made or detached less than ``vmkit.plan.IN_FLIGHT`` ago
  (``creationTimestamp``, ``lastDetachTimestamp``) stays: it may be a
  restore's, between its steps. No disk of a workload stays an orphan while
  one of its instances has no boot disk (a restore cut short whose undo
  failed too): the detached old boot disk may be its only copy.

Snapshots are backups and never count; neither does a rule or disk vmkit did
not make (no vmkit label, or a rule not of :func:`translate.firewall_body`'s
shape).
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.cloud import compute_v1

from vmkit.errors import NotFound
from vmkit.machine import Orphan
from vmkit.plan import recent
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.gcp import translate as tr

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

log = logging.getLogger(__name__)

__all__ = ["Orphans"]

FIREWALL = "firewall"
DISK = "disk"
# Disk.status values of a disk that exists and is not changing
# (compute_v1/types/compute.py, Disk.Status).
_SETTLED_DISK = frozenset({"READY", "FAILED"})


class Orphans:
    """Finds and deletes orphans through the provider's retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def find(self, workload: str | None) -> builtins.list[Orphan]:
        """Read-only: one listing of instances (of every zone: a rule serves
        the workload's instances in all of them), firewalls and disks."""
        alive = self._p._live_workloads(workload)
        found = [o for o in self._firewalls(workload) if o.workload not in alive]
        return found + self._disks(workload, alive)

    def _firewalls(self, workload: str | None) -> builtins.list[Orphan]:
        request = compute_v1.ListFirewallsRequest(project=self._p.project)
        if workload is not None:
            request.filter = f'name = "{tr.firewall_name(workload)}"'
        rules = self._p._pages("compute:firewalls.list", self._p.clients.firewalls.list, request)
        found = []
        for rule in rules:
            raw = self._p.to_json(rule)
            owner = tr.firewall_owner(raw)
            if owner is None or (workload is not None and owner != workload):
                continue
            found.append(
                Orphan(
                    kind=FIREWALL,
                    id=str(raw.get("id") or raw["name"]),
                    name=str(raw["name"]),
                    provider=self._p.name,
                    workload=owner,
                    reason="firewall rule of a workload with no instance",
                    raw=raw,
                )
            )
        return found

    def _disks(self, workload: str | None, alive: set[str]) -> builtins.list[Orphan]:
        owner = tr.owner_filter(workload)
        request = compute_v1.ListDisksRequest(
            project=self._p.project, zone=self._p.zone, filter=owner
        )
        disks = self._p._pages("compute:disks.list", self._p.clients.disks.list, request)
        found = []
        now = datetime.now(UTC)
        for disk in disks:
            raw = self._p.to_json(disk)
            labels = raw.get("labels") or {}
            if raw.get("users") or str(raw.get("status")) not in _SETTLED_DISK:
                continue
            moving = recent(raw.get("creationTimestamp"), now) or recent(
                raw.get("lastDetachTimestamp"), now
            )
            if labels.get(WORKLOAD_TAG) in alive and moving:
                continue
            found.append(
                Orphan(
                    kind=DISK,
                    id=str(raw.get("id") or raw["name"]),
                    name=str(raw["name"]),
                    provider=self._p.name,
                    workload=str(labels.get(WORKLOAD_TAG) or "") or None,
                    reason="disk that no instance uses",
                    raw=raw,
                )
            )
        stranded = self._bootless_workloads(workload) if found else set()
        for orphan in found:
            if orphan.workload in stranded:
                log.warning(
                    "gcp: keeping disk %s: an instance of %s has no boot disk (a restore "
                    "cut short?); attach the disk back or delete it by hand",
                    orphan.name,
                    orphan.workload,
                )
        return [o for o in found if o.workload not in stranded]

    def _bootless_workloads(self, workload: str | None) -> set[str]:
        """The workloads with an instance in this zone that has no boot disk
        attached (one ``instances.list``; a disk's ``boot`` flag, Instance
        reference: https://cloud.google.com/compute/docs/reference/rest/v1/instances)."""
        owner = tr.owner_filter(workload)
        request = compute_v1.ListInstancesRequest(
            project=self._p.project, zone=self._p.zone, filter=owner
        )
        listed = self._p._pages("compute:instances.list", self._p.clients.instances.list, request)
        bootless: set[str] = set()
        for instance in listed:
            raw = self._p.to_json(instance)
            if not any(disk.get("boot") for disk in raw.get("disks") or []):
                bootless.add(str((raw.get("labels") or {}).get(WORKLOAD_TAG)))
        return bootless

    def delete(self, orphans: Sequence[Orphan]) -> None:
        """Ask for every deletion, then wait for each; one already gone is fine."""
        pending: list[tuple[Any, str, str]] = []
        for orphan in orphans:
            try:
                pending.append((self._start_delete(orphan), orphan.kind, orphan.name))
            except NotFound:
                continue
        for op, kind, name in pending:
            try:
                self._p.wait_operation(op, f"compute:{kind}s.delete", name)
            except NotFound:
                continue

    def _start_delete(self, orphan: Orphan) -> Any:
        if orphan.kind == FIREWALL:
            return self._p._sdk(
                "compute:firewalls.delete",
                self._p.clients.firewalls.delete_unary,
                request_type=compute_v1.DeleteFirewallRequest,
                project=self._p.project,
                firewall=orphan.name,
                request_id=str(uuid.uuid4()),
            )
        return self._p._sdk(
            "compute:disks.delete",
            self._p.clients.disks.delete_unary,
            request_type=compute_v1.DeleteDiskRequest,
            project=self._p.project,
            zone=self._p.zone,
            disk=orphan.name,
            request_id=str(uuid.uuid4()),
        )
