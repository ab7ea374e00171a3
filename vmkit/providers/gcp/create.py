"""One create request: an ``instances.bulkInsert`` of named instances, and what it made.

The request asks for ``count`` instances by name with ``minCount`` 1, so
Compute Engine creates what fits and refuses the rest ("If minCount
instances cannot be created, then no instances will be created",
BulkInsertInstanceResource reference). When it did not create every name,
the DONE operation says how many it made
(``instancesBulkInsertOperationMetadata.perLocationStatus``) and each
instance has an ``insert`` operation of its own in the bulk operation's
``operationGroupId``: the successful ones carry the new instance's id
(``targetId``), the failed ones the reason, ``RESOURCE_ALREADY_EXISTS`` for a
name taken (how Slurm on GCP reads a bulkInsert:
GoogleCloudPlatform/cluster-toolkit, .../slurm_files/scripts/resume.py,
``_handle_bulk_insert_op``, and util.py ``get_insert_operations``).

From that, each name of the request is one of:

* made by this request (its insert succeeded, the instance has that id);
* made by another deploy of the same workload and spec that raced this one
  (the name exists, same labels): adopted, as if this request had made it;
* refused, with the cloud's reason.

Only instances whose id this request's own insert operations name are ever
deleted here: never an instance found by its name alone, which may be a
concurrent deploy's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import compute_v1

from vmkit.errors import ProviderError
from vmkit.machine import Machine, MachineState
from vmkit.plan import CreateRequest, PartialCreate
from vmkit.providers.gcp import translate as tr
from vmkit.providers.gcp.errors import PROVIDER, operation_error
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["BulkCreate"]

log = logging.getLogger(__name__)

OPERATION = "compute:instances.bulkInsert"
#: Listings to wait for instances a complete bulkInsert made to show.
RELIST_POLLS = 10
_UNUSABLE = frozenset({MachineState.DELETING, MachineState.DELETED, MachineState.FAILED})


class BulkCreate:
    """Sends create requests through the provider's retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def create(self, workload: Workload, request: CreateRequest) -> list[Machine]:
        """Send ``request``; return a machine per replica, made or adopted.

        Raises PartialCreate with those when some names were refused (the
        error names them with the cloud's reason), or the error itself when
        none could be had; this request's own instances that it does not
        return are deleted first.
        """
        body = request.body
        names = [tr.replica_name(workload.name, r) for r in request.replicas]
        sdk_request = compute_v1.BulkInsertInstanceRequest(
            project=body["project"],
            zone=body["zone"],
            request_id=body["requestId"],
            bulk_insert_instance_resource_resource=compute_v1.BulkInsertInstanceResource.from_json(
                json.dumps(body["bulkInsertInstanceResource"])
            ),
        )
        try:
            op = self._p._sdk(
                OPERATION, self._p.clients.instances.bulk_insert_unary, request=sdk_request
            )
        except ProviderError:
            # Refused up front (quota, capacity, an invalid field): bulkInsert
            # created nothing (troubleshooting-bulk-vm-creation reference).
            self._drop_unused_firewall(workload.name)
            raise
        done = self._p.wait_operation(op, OPERATION, ", ".join(names), check=False)
        listed = {m.name: m for m in self._p._list(workload.name)}
        complete = not done.error.errors and _created(done) == len(names)
        for _ in range(RELIST_POLLS):
            if not complete or all(n in listed for n in names):
                break
            # Every name was made: one not listed yet is eventual consistency.
            time.sleep(self._p.poll_interval)
            listed = {m.name: m for m in self._p._list(workload.name)}
        if complete and all(n in listed for n in names):
            return [listed[n] for n in names]
        return self._settle(workload, names, done, listed)

    def _settle(
        self, workload: Workload, names: Sequence[str], done: Any, listed: dict[str, Machine]
    ) -> list[Machine]:
        ours: dict[str, str] = {}
        reasons: dict[str, Any] = {}
        for insert in self._inserts(done):
            name = tr.last_segment(insert.target_link)
            if insert.error.errors:
                reasons[name] = insert
            elif insert.target_id:
                ours[name] = str(insert.target_id)
        rolled_back = bool(done.error.errors)
        made: list[Machine] = []
        refused: dict[str, Any] = {}
        for name in names:
            machine = listed.get(name)
            if machine is not None and not rolled_back and ours.get(name) == machine.id:
                made.append(machine)
            elif machine is not None and _adoptable(machine, workload, set(ours.values())):
                log.info("gcp: %s was made by a concurrent deploy; adopting it", name)
                made.append(machine)
            elif name in ours and not rolled_back:
                refused[name] = f"made as instance {ours[name]} but not listed"
            else:
                refused[name] = reasons.get(name) or (done if rolled_back else None)
        kept = {m.id for m in made}
        stray = [m for m in listed.values() if m.id in ours.values() and m.id not in kept]
        if stray:
            # The cloud rolls a failed bulkInsert back itself; these are ours by id.
            self._p._delete(stray)
        if not refused:
            return made
        error = _refusal(refused)
        if not made:
            self._drop_unused_firewall(workload.name)
            raise error
        raise PartialCreate(made, error)

    def _inserts(self, done: Any) -> list[Any]:
        """The insert operations of the bulk operation's group (one paginated list)."""
        group = done.operation_group_id
        if not group:
            return []
        request = compute_v1.ListZoneOperationsRequest(
            project=self._p.project,
            zone=tr.last_segment(done.zone) or self._p.zone,
            filter=f'(operationType = "insert") AND (operationGroupId = "{group}")',
        )
        return list(
            self._p._pages(
                "compute:zoneOperations.list", self._p.clients.zone_operations.list, request
            )
        )

    def _drop_unused_firewall(self, workload: str) -> None:
        """Delete the workload's firewall rule when no machine of it exists:
        the rule was made for replicas that were all refused."""
        try:
            gone = (MachineState.DELETING, MachineState.DELETED)
            if not [m for m in self._p._list(workload) if m.state not in gone]:
                self._p._firewalls.delete(workload)
        except ProviderError as exc:
            log.warning("gcp: could not delete the unused firewall rule of %s: %s", workload, exc)


def _created(done: Any) -> int:
    metadata = done.instances_bulk_insert_operation_metadata
    return sum(int(s.created_vm_count) for s in metadata.per_location_status.values())


def _adoptable(machine: Machine, workload: Workload, ours: set[str]) -> bool:
    """An instance of the same workload and spec that another deploy made."""
    return (
        machine.id not in ours
        and machine.workload == workload.name
        and machine.spec_hash == workload.spec_hash
        and machine.state not in _UNUSABLE
    )


def _refusal(refused: dict[str, Any]) -> ProviderError:
    """One error naming every refused name with the cloud's reason; of the
    reasons' class when they share one (all QUOTA_EXCEEDED: QuotaExceeded)."""
    groups: dict[int, tuple[Any, list[str]]] = {}
    for name, record in sorted(refused.items()):
        groups.setdefault(id(record), (record, []))[1].append(name)
    errors: list[ProviderError] = []
    for record, group in groups.values():
        subject = ", ".join(group)
        if record is None or isinstance(record, str):
            why = record or "not created, and no reason given"
            errors.append(
                ProviderError(
                    f"{OPERATION}: {subject}: {why}", provider=PROVIDER, operation=OPERATION
                )
            )
        else:
            errors.append(operation_error(record, OPERATION, subject))
    if len(errors) == 1:
        return errors[0]
    kinds = {type(e) for e in errors}
    kind = kinds.pop() if len(kinds) == 1 else ProviderError
    return kind("; ".join(str(e) for e in errors), provider=PROVIDER, operation=OPERATION)
