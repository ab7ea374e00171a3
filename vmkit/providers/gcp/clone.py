"""Clones: replicas whose boot disk is made from a snapshot, one ``instances.insert`` each.

bulkInsert cannot boot from a snapshot ("Boot disks from snapshots. You can't
use a snapshot to create the boot disks for the VMs",
https://cloud.google.com/compute/docs/instances/multiple/about-bulk-creation,
Limitations), while instances.insert takes ``initializeParams.sourceSnapshot``
("one of initializeParams.sourceSnapshot or initializeParams.sourceImage or
disks.source is required", AttachedDiskInitializeParams.source_snapshot in
compute_v1/types/compute.py). So a clone is as few calls as the cloud allows:
one insert per replica, each with a requestId of its own that the retries of
that insert resend.

Each insert has its own outcome, read from its own operation:

* DONE without error: the instance is listed (a few polls for eventual
  consistency) and returned. When it cannot be listed at all it is deleted
  again and refused, as :mod:`~vmkit.providers.gcp.create` does, so that no
  instance runs under a refusal.
* refused synchronously or on the operation (quota, capacity): nothing was
  made; the error is raised with Google's reason.
* the name is taken (409 ``alreadyExists``, or ``RESOURCE_ALREADY_EXISTS``
  on the operation): the instance is adopted when a racing deploy of the
  same workload and spec made it, refused otherwise.

Unlike bulkInsert, a refused insert does not drop the workload's firewall
rule: the other replicas' inserts may be in flight, and the rule must be
there when they boot. An atomic deploy removes it with the rest; ``gc``
finds the rule of a workload left with no instance.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from google.cloud import compute_v1

from vmkit.errors import ProviderError
from vmkit.machine import Machine
from vmkit.plan import CreateRequest
from vmkit.providers.gcp import translate as tr
from vmkit.providers.gcp.create import adoptable, relisted, unlisted_record
from vmkit.providers.gcp.errors import error_reasons, operation_error
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["OPERATION", "InsertCreate"]

log = logging.getLogger(__name__)

OPERATION = "compute:instances.insert"
#: How Compute Engine says a name is taken: the HTTP reason, or the code on an operation.
_TAKEN_REASON = "alreadyExists"
_TAKEN_CODE = "RESOURCE_ALREADY_EXISTS"


class InsertCreate:
    """Sends one-replica create requests through the provider's retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def requests(
        self,
        workload: Workload,
        replicas: Sequence[int],
        *,
        snapshot: tr.BootSource,
        snapshot_gb: int,
        machine_type: str,
        user_data: str | None,
        options: tr.GcpOptions,
    ) -> list[CreateRequest]:
        """One ``instances.insert`` per replica booting from ``snapshot``, each
        with a requestId of its own (a fresh uuid4)."""
        made = []
        for replica in replicas:
            resource = tr.insert_body(
                workload,
                replica=replica,
                machine_type=machine_type,
                snapshot=snapshot,
                snapshot_gb=snapshot_gb,
                user_data=user_data,
                options=options,
                zone=self._p.zone,
                network=self._p.network,
                subnetwork=self._p.subnetwork,
            )
            body = {
                "project": self._p.project,
                "zone": self._p.zone,
                "requestId": str(uuid.uuid4()),
                "instanceResource": resource,
            }
            made.append(CreateRequest(OPERATION, (replica,), body))
        return made

    def create(self, workload: Workload, request: CreateRequest) -> list[Machine]:
        """Send ``request`` (one ``instances.insert``); return its replica's
        machine, made or adopted. Raises the cloud's error when it was
        refused; an instance it made that cannot be read is deleted first."""
        body = request.body
        resource = body["instanceResource"]
        name = str(resource["name"])
        sdk_request = compute_v1.InsertInstanceRequest(
            project=body["project"],
            zone=body["zone"],
            request_id=body["requestId"],
            instance_resource=compute_v1.Instance.from_json(json.dumps(resource)),
        )
        try:
            op = self._p._sdk(
                OPERATION, self._p.clients.instances.insert_unary, request=sdk_request
            )
        except ProviderError as exc:
            if _TAKEN_REASON in error_reasons(exc):
                return [self._adopt(workload, name, exc)]
            raise
        done = self._p.wait_operation(op, OPERATION, name, check=False)
        if done.error.errors:
            error = operation_error(done, OPERATION, name)
            if _TAKEN_CODE in {str(e.code) for e in done.error.errors}:
                return [self._adopt(workload, name, error)]
            raise error
        made = str(done.target_id)
        try:
            listed = relisted(self._p, workload.name, [name])
        except ProviderError as exc:
            self._delete_unread(workload, name, made, exc)
        machine = listed.get(name)
        if machine is None or machine.id != made:
            raise ProviderError(
                f"{OPERATION}: {name}: made as instance {made} but not listed",
                provider=self._p.name,
                operation=OPERATION,
            )
        return [machine]

    def _adopt(self, workload: Workload, name: str, error: ProviderError) -> Machine:
        """The instance holding ``name`` when a racing deploy of the same spec
        made it; else ``error``, the refusal of this request."""
        listed = {m.name: m for m in self._p._list(workload.name)}
        machine = listed.get(name)
        if machine is not None and adoptable(machine, workload, set()):
            log.info("gcp: %s was made by a concurrent deploy; adopting it", name)
            return machine
        raise error

    def _delete_unread(
        self, workload: Workload, name: str, made: str, exc: ProviderError
    ) -> NoReturn:
        """The insert made instance ``made`` and the listing that would return
        it fails: delete it (by the name its own insert made) and refuse."""
        why = f"made, then deleted again: could not be listed ({exc})"
        try:
            self._p._delete([unlisted_record(workload.name, name, made)])
        except ProviderError as delete_error:
            why = f"made, then neither listed ({exc}) nor deleted ({delete_error}): destroy it"
        raise ProviderError(
            f"{OPERATION}: {name}: {why}", provider=self._p.name, operation=OPERATION
        ) from exc
