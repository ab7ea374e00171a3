"""instances.bulkInsert of the Compute Engine fake.

What the fake does, and where each behaviour is documented:

* Capacity and quota are validated up front: 403 ``quotaExceeded`` or 503
  ``insufficientCapacity`` instead of an operation when not even ``minCount``
  instances fit
  (https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-bulk-vm-creation).
* ``count`` is the most instances to create and ``minCount`` (``count`` when
  unset) the fewest: "If minCount instances cannot be created, then no
  instances will be created and instances already created will be deleted"
  (BulkInsertInstanceResource reference,
  https://cloud.google.com/compute/docs/reference/rest/v1/BulkInsertInstanceResource).
  Between the two, what fits is created and the rest fails.
* Every instance of the request has an ``insert`` operation of its own,
  sharing the bulkInsert operation's ``operationGroupId``; a name that
  already exists fails its insert with ``RESOURCE_ALREADY_EXISTS`` and is not
  counted as created; the bulk operation's
  ``instancesBulkInsertOperationMetadata.perLocationStatus`` counts
  ``createdVmCount`` and ``failedToCreateVmCount`` (how Slurm on GCP reads
  a bulkInsert: GoogleCloudPlatform/cluster-toolkit,
  .../slurm_files/scripts/resume.py ``_handle_bulk_insert_op`` and
  util.py ``get_insert_operations``).
* Whether the bulk operation itself carries an ``error`` when it made at
  least ``minCount`` names and failed others is not documented: by default
  it does not; ``GceFake.report_partial_bulk_errors`` makes it carry the
  first failure, the instances made staying (``deletedVmCount`` 0, the
  "Count of VMs that got deleted during rollback", BulkInsertOperationStatus).
"""

from __future__ import annotations

import re
from typing import Any

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.gce.build import Plan, commit, plan_instance
from vmkit.testing.fakes.gce.common import body_of, check_name, op_response, replay, zone_of
from vmkit.testing.fakes.gce.errors import (
    conflict_error,
    exhausted_message,
    invalid,
    quota_error,
    quota_message,
)
from vmkit.testing.fakes.gce.render import instance_link
from vmkit.testing.fakes.gce.state import GceState, OpError

__all__ = ["BulkApi"]


class BulkApi:
    """The bulkInsert handler; the server holds its lock around it."""

    def __init__(self, state: GceState) -> None:
        self.state = state

    def bulk_insert(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        body = body_of(request)
        if body.get("sourceInstanceTemplate"):
            raise invalid(
                "resource.sourceInstanceTemplate",
                body["sourceInstanceTemplate"],
                "The fake does not serve instance templates.",
            )
        props = body.get("instanceProperties")
        if not isinstance(props, dict):
            raise invalid(
                "resource.instanceProperties",
                "",
                "Required when sourceInstanceTemplate is not set.",
            )
        count = int(body.get("count") or 0)
        if count < 1:
            raise invalid("resource.count", count, "Must be greater than or equal to 1.")
        min_count = int(body.get("minCount") or count)
        if not 1 <= min_count <= count:
            raise invalid("resource.minCount", min_count, "Must be between 1 and count.")
        names = self._names(project, zone, body, count)
        existing = [n for n in names if self.state.instance(project, zone, n) is not None]
        machine = str(props.get("machineType") or "")
        instance_body = dict(props)
        # InstanceProperties.machineType takes a bare name; a URL "will result in an
        # INTERNAL_ERROR" (InstanceProperties.machine_type in compute_v1/types/compute.py).
        instance_body["machineType"] = f"zones/{zone}/machineTypes/{machine.rsplit('/', 1)[-1]}"
        for i, disk in enumerate(instance_body.get("disks") or []):
            if (disk.get("initializeParams") or {}).get("sourceSnapshot"):
                raise invalid(
                    f"resource.instanceProperties.disks[{i}].initializeParams.sourceSnapshot",
                    disk["initializeParams"]["sourceSnapshot"],
                    "Boot disks from snapshots are not supported when creating VMs in bulk.",
                )
        plans = [
            plan_instance(
                self.state, project, zone, n, instance_body, "resource.instanceProperties"
            )
            for n in names
            if n not in existing
        ]
        group = self.state.new_id()
        if "/" in machine:
            internal = OpError(
                "INTERNAL_ERROR",
                "Internal error. Please try again or contact Google Support.",
                500,
                "INTERNAL SERVER ERROR",
            )
            return self._finish(project, zone, rid, group, count, [], {}, internal)
        failures: dict[str, OpError] = {
            n: conflict_error(f"projects/{project}/zones/{zone}/instances/{n}") for n in existing
        }
        if plans:
            fits = self._capacity(
                project,
                zone,
                plans[0].machine_type.guest_cpus,
                len(plans),
                min(min_count, len(plans)),
            )
            region = zone.rsplit("-", 1)[0]
            limit = self.state.cpu_limit(region) or 0
            failures.update({p.name: quota_error(limit, region) for p in plans[fits:]})
            plans = plans[:fits]
        failures.update({p.name: p.failure for p in plans if p.failure is not None})
        creatable = [p for p in plans if p.name not in failures]
        error = None
        if len(creatable) < min_count:
            # Fewer than minCount: nothing is created (or all is rolled back).
            error = failures[min(failures)]
            creatable = []
        elif failures and self.state.bulk_partial_error:
            error = failures[min(failures)]
        return self._finish(project, zone, rid, group, count, creatable, failures, error)

    def _finish(
        self,
        project: str,
        zone: str,
        rid: str | None,
        group: str,
        count: int,
        plans: list[Plan],
        failures: dict[str, OpError],
        error: OpError | None,
    ) -> Response:
        """Create ``plans``, record an insert operation per instance (failed for
        ``failures``) and the bulk operation, all DONE together."""
        now = self.state.now()
        done = now + self.state.transition_delay
        for plan in plans:
            inst = commit(self.state, plan, failure=None)
            ready = inst.timeline.ends_at()
            done = max(done, ready)
            insert = self.state.new_operation(
                project,
                zone,
                "insert",
                target_link=instance_link(project, zone, inst.name),
                target_id=inst.id,
                done_at=ready,
            )
            insert.group = group
        for name, failure in sorted(failures.items()):
            insert = self.state.new_operation(
                project,
                zone,
                "insert",
                target_link=instance_link(project, zone, name),
                target_id=None,
                done_at=done,
                error=failure,
            )
            insert.group = group
        op = self.state.new_operation(
            project,
            zone,
            "bulkInsert",
            target_link=None,
            target_id=None,
            done_at=done,
            error=error,
            request_id=rid,
        )
        op.group = group
        op.bulk = {"target": count, "created": len(plans), "failed": count - len(plans)}
        return op_response(op, self.state)

    def _names(self, project: str, zone: str, body: dict[str, Any], count: int) -> list[str]:
        per_instance = body.get("perInstanceProperties") or {}
        if per_instance:
            names = []
            for key, props in per_instance.items():
                names.append(check_name("resource.perInstanceProperties.key", key))
                if isinstance(props, dict) and props.get("name") not in (None, key):
                    raise invalid(
                        "resource.perInstanceProperties.name",
                        props["name"],
                        "Must equal the map key.",
                    )
            # a proto map has no order on the wire; creating in name order keeps
            # partial (minCount) results reproducible
            names.sort()
            if len(names) != count:
                raise invalid(
                    "resource.count", count, "Must equal the number of perInstanceProperties."
                )
            return names
        pattern = str(body.get("namePattern") or "")
        runs = re.findall(r"#+", pattern)
        if not pattern:
            raise invalid(
                "resource.namePattern",
                "",
                "Either namePattern or perInstanceProperties must be set.",
            )
        if len(runs) != 1 or len(runs[0]) > 18:
            raise invalid(
                "resource.namePattern",
                pattern,
                "Must contain one continuous sequence of at most 18 '#' characters.",
            )
        width = len(runs[0])
        head, tail = pattern.split(runs[0])
        taken = re.compile(f"^{re.escape(head)}(\\d{{{width}}}){re.escape(tail)}$")
        highest = max(
            (
                int(m.group(1))
                for i in self.state.instances_in(project, zone)
                if (m := taken.match(i.name))
            ),
            default=0,
        )
        return [f"{head}{n:0{width}d}{tail}" for n in range(highest + 1, highest + 1 + count)]

    def _capacity(self, project: str, zone: str, cpus: int, wanted: int, minimum: int) -> int:
        """How many of ``wanted`` instances fit; 503/403 when not even ``minimum`` do."""
        if self.state.is_exhausted(zone):
            raise HttpError(503, exhausted_message(project, zone), reason="insufficientCapacity")
        region = zone.rsplit("-", 1)[0]
        limit = self.state.cpu_limit(region)
        if limit is None:
            return wanted
        fits = max(0, (limit - self.state.cpu_usage(project, region)) // cpus)
        if fits < minimum:
            raise HttpError(
                403, quota_message(limit, region), reason="quotaExceeded", domain="usageLimits"
            )
        return min(wanted, fits)
