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

An ``error`` on the bulk operation does not undo the names it made: with
``minCount`` 1 Compute Engine rolls back only when it made none, and a
rollback shows as ``deletedVmCount`` (see :func:`_rolled_back`).

Only instances this request's own operation says it made are ever deleted
here: matched by the id its insert operations give when they can be listed,
else by the names those inserts made (see ``_unread_instances``); never an
instance found by its name alone, which may be a concurrent deploy's. When
the DONE operation's outcome cannot be read, what it made is returned or
deleted, not left running under a refusal, as far as either read still
answers: see ``_unread_ids`` and ``_unread_instances``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from google.cloud import compute_v1

from vmkit.errors import ProviderError
from vmkit.machine import Machine, MachineState
from vmkit.plan import CreateRequest, PartialCreate
from vmkit.providers.gcp import translate as tr
from vmkit.providers.gcp.errors import PROVIDER, operation_error
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["BulkCreate", "adoptable", "relisted", "unlisted_record"]

log = logging.getLogger(__name__)

OPERATION = "compute:instances.bulkInsert"
#: Names per bulkInsert request (the API caps count at 1000, BulkInsertInstanceResource).
BULK_LIMIT = 1000
#: Listings to wait for instances a complete bulkInsert made to show.
RELIST_POLLS = 10
_UNUSABLE = frozenset({MachineState.DELETING, MachineState.DELETED, MachineState.FAILED})


class BulkCreate:
    """Sends create requests through the provider's retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def requests(
        self,
        workload: Workload,
        replicas: Sequence[int],
        *,
        image: str,
        machine_type: str,
        user_data: str | None,
        options: tr.GcpOptions,
    ) -> list[CreateRequest]:
        """The bulkInsert requests making ``replicas`` from ``image``, one per
        ``BULK_LIMIT`` names, each with a requestId of its own (a fresh uuid4)."""
        made = []
        for start in range(0, len(replicas), BULK_LIMIT):
            batch = tuple(replicas[start : start + BULK_LIMIT])
            resource = tr.bulk_insert_body(
                workload,
                replicas=batch,
                machine_type=machine_type,
                image=image,
                user_data=user_data,
                options=options,
                network=self._p.network,
                subnetwork=self._p.subnetwork,
            )
            body = {
                "project": self._p.project,
                "zone": self._p.zone,
                "requestId": str(uuid.uuid4()),
                "bulkInsertInstanceResource": resource,
            }
            made.append(CreateRequest(OPERATION, batch, body))
        return made

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
        # The operation is DONE: what it made exists. From here a failed read
        # must not escape as a plain refusal, which would report every
        # replica failed while its instance runs, one an atomic deploy would
        # not roll back either (see _unread_ids and _unread_instances).
        complete = not done.error.errors and _created(done) == len(names)
        ours: dict[str, str] = {}
        reasons: dict[str, Any] = {}
        if not complete:
            try:
                ours, reasons = _outcomes(self._inserts(done))
            except ProviderError as exc:
                self._unread_ids(workload, names, done, exc)
        # Every name was made by this request when it is complete; after a
        # rollback none of them is to be waited for.
        made = list(names) if complete else sorted(ours)
        try:
            listed = relisted(self._p, workload.name, [] if _rolled_back(done) else made)
        except ProviderError as exc:
            self._unread_instances(workload, names, made, ours, reasons, exc)
        if complete and all(n in listed for n in names):
            return [listed[n] for n in names]
        return self._settle(workload, names, done, listed, ours, reasons)

    def _settle(
        self,
        workload: Workload,
        names: Sequence[str],
        done: Any,
        listed: dict[str, Machine],
        ours: dict[str, str],
        reasons: dict[str, Any],
    ) -> list[Machine]:
        """Decide per name: made by this request, adopted, or refused."""
        rolled_back = _rolled_back(done)
        made: list[Machine] = []
        refused: dict[str, Any] = {}
        for name in names:
            machine = listed.get(name)
            if machine is not None and not rolled_back and ours.get(name) == machine.id:
                made.append(machine)
            elif machine is not None and adoptable(machine, workload, set(ours.values())):
                log.info("gcp: %s was made by a concurrent deploy; adopting it", name)
                made.append(machine)
            elif name in ours and not rolled_back:
                refused[name] = f"made as instance {ours[name]} but not listed"
            else:
                refused[name] = reasons.get(name) or (done if done.error.errors else None)
        kept = {m.id for m in made}
        stray = [m for m in listed.values() if m.id in ours.values() and m.id not in kept]
        if stray:
            # The cloud rolls a failed bulkInsert back itself; these are ours by id.
            self._p._delete(stray)
        if refused:
            self._refuse(workload, made, _refusal(refused))
        return made

    def _refuse(self, workload: Workload, made: list[Machine], error: ProviderError) -> NoReturn:
        """PartialCreate with ``made`` when there are any, else ``error``
        itself once the rule made for the refused replicas is dropped."""
        if not made:
            self._drop_unused_firewall(workload.name)
            raise error
        raise PartialCreate(made, error)

    def _unread_ids(
        self, workload: Workload, names: Sequence[str], done: Any, exc: ProviderError
    ) -> NoReturn:
        """The operation made only some names and its insert operations,
        which say which with the ids, cannot be read (``exc``).

        Without the ids no instance can be told to be this request's, so
        none is deleted. The listed ones of this workload and spec are
        returned, as a racing deploy's are adopted: whoever made them, they
        are the replicas asked for; unless Compute Engine rolled the
        operation back, when a listed one may be ours on its way out. The
        other names are refused with ``exc``.
        """
        try:
            listed = {m.name: m for m in self._p._list(workload.name)}
        except ProviderError:
            raise _unknown(names, exc) from exc
        made = []
        if not _rolled_back(done):
            made = [
                listed[n] for n in names if n in listed and adoptable(listed[n], workload, set())
            ]
        taken = {m.name for m in made}
        why = f"the operation is done but which names it made cannot be read: {exc}"
        self._refuse(workload, made, _read_error([n for n in names if n not in taken], why, exc))

    def _unread_instances(
        self,
        workload: Workload,
        names: Sequence[str],
        made: Sequence[str],
        ours: dict[str, str],
        reasons: dict[str, Any],
        exc: ProviderError,
    ) -> NoReturn:
        """The instances this request made (``made``) cannot be listed (``exc``).

        Returning them needs their records, and a deploy would go on to wait
        on the listing that fails; reporting them refused while they run
        would leave machines the deploy says it did not make, which an atomic
        deploy would not roll back. So they are deleted, and every name of
        the request is refused. By name: the insert that succeeded on a name
        made the instance that holds it.
        """
        doomed = [unlisted_record(workload.name, name, ours.get(name, "")) for name in made]
        why = f"made, then deleted again: could not be listed ({exc})"
        try:
            if doomed:
                self._p._delete(doomed)
        except ProviderError as delete_error:
            why = f"made, then neither listed ({exc}) nor deleted ({delete_error}): destroy it"
        unlisted = f"could not be listed: {exc}"
        refused: dict[str, Any] = {
            n: reasons.get(n) or (why if n in made else unlisted) for n in names
        }
        error = _refusal(refused)
        error.__cause__ = exc
        raise error

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
        """Delete the workload's firewall rule when no machine of it exists in
        any zone: the rule was made for replicas that were all refused. Kept
        when that cannot be read."""
        try:
            self._p._firewalls.delete_unused(workload)
        except ProviderError as exc:
            log.warning("gcp: could not delete the unused firewall rule of %s: %s", workload, exc)


def relisted(provider: GcpProvider, workload: str, made: Sequence[str]) -> dict[str, Machine]:
    """The workload's instances by name, listed again (a few polls) while a
    name a create made (``made``) is not listed yet: eventual consistency."""
    listed = {m.name: m for m in provider._list(workload)}
    for _ in range(RELIST_POLLS):
        if all(n in listed for n in made):
            break
        time.sleep(provider.poll_interval)
        listed = {m.name: m for m in provider._list(workload)}
    return listed


def _outcomes(inserts: Sequence[Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """From a bulk operation's insert operations: the id of each name made,
    and the failed insert of each name refused."""
    ours: dict[str, str] = {}
    reasons: dict[str, Any] = {}
    for insert in inserts:
        name = tr.last_segment(insert.target_link)
        if insert.error.errors:
            reasons[name] = insert
        elif insert.target_id:
            ours[name] = str(insert.target_id)
    return ours, reasons


def _rolled_back(done: Any) -> bool:
    """Whether Compute Engine deleted what the bulk operation made.

    Only below ``minCount`` does it roll back ("no instances will be created
    and instances already created will be deleted",
    BulkInsertInstanceResource.minCount); the request asks for ``minCount``
    1, so an ``error`` on the operation alone says nothing of the names it
    did make: those are read per name. A rollback shows in
    ``perLocationStatus`` as ``deletedVmCount`` ("Count of VMs that got
    deleted during rollback") or a ``ROLLING_BACK`` status
    (BulkInsertOperationStatus, google/cloud/compute_v1/types/compute.py).
    """
    statuses = done.instances_bulk_insert_operation_metadata.per_location_status.values()
    return any(int(s.deleted_vm_count) > 0 or s.status == "ROLLING_BACK" for s in statuses)


def unlisted_record(workload: str, name: str, instance_id: str) -> Machine:
    """The record of an instance known only by the insert that made it."""
    return Machine(
        id=instance_id,
        name=name,
        provider=PROVIDER,
        kind="vm",
        workload=workload,
        replica=None,
        state=MachineState.UNKNOWN,
    )


def _read_error(names: Sequence[str], why: str, cause: ProviderError) -> ProviderError:
    error = ProviderError(
        f"{OPERATION}: {', '.join(names)}: {why}", provider=PROVIDER, operation=OPERATION
    )
    error.__cause__ = cause
    return error


def _unknown(names: Sequence[str], cause: ProviderError) -> ProviderError:
    """Neither the instances nor the insert operations can be read."""
    return _read_error(
        names,
        f"the operation is done but what it made cannot be read ({cause}); "
        "any of these that exist are kept by the next deploy, or removed by destroy",
        cause,
    )


def _created(done: Any) -> int:
    metadata = done.instances_bulk_insert_operation_metadata
    return sum(int(s.created_vm_count) for s in metadata.per_location_status.values())


def adoptable(machine: Machine, workload: Workload, ours: set[str]) -> bool:
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
