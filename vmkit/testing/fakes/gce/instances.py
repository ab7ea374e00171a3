"""instances.* of the Compute Engine fake: insert, lifecycle, labels, protection, console.

Lifecycle (https://cloud.google.com/compute/docs/instances/instance-life-cycle):
insert PROVISIONING -> STAGING -> RUNNING; stop STOPPING -> TERMINATED; start
STAGING -> RUNNING; reset keeps RUNNING; delete STOPPING -> gone, taking the
``autoDelete`` disks with it. Every mutation answers 200 with an Operation;
capacity and quota failures of ``insert`` show on the DONE operation.
"""

from __future__ import annotations

from typing import Any

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.gce.build import boot_log, commit, plan_instance
from vmkit.testing.fakes.gce.common import (
    aggregated_response,
    body_of,
    check_labels,
    check_name,
    list_response,
    op_response,
    replay,
    zone_of,
)
from vmkit.testing.fakes.gce.errors import (
    already_exists,
    boot_disk_refused,
    exhausted_error,
    invalid,
    not_found,
    not_ready,
    quota_error,
)
from vmkit.testing.fakes.gce.render import disk_link, instance_link, render_instance
from vmkit.testing.fakes.gce.shapes import RefError, fingerprint, parse_ref
from vmkit.testing.fakes.gce.state import GONE, Attached, GceState, Instance, OpError

__all__ = ["InstanceApi"]

#: the serial console keeps about 1 MB (instances.getSerialPortOutput, ``start``)
SERIAL_BUFFER = 1024 * 1024


class InstanceApi:
    """Handlers for the instances collection; the server holds its lock around them."""

    def __init__(self, state: GceState) -> None:
        self.state = state

    # ---------------------------------------------------------------- helpers

    def _path(self, project: str, zone: str, name: str) -> str:
        return f"projects/{project}/zones/{zone}/instances/{name}"

    def _live(self, request: Request) -> Instance:
        project, zone = zone_of(self.state, request)
        name = request.params["instance"]
        inst = self.state.instance(project, zone, name)
        if inst is None:
            raise not_found(self._path(project, zone, name))
        return inst

    def _capacity_failure(self, inst_project: str, zone: str, cpus: int) -> OpError | None:
        if self.state.is_exhausted(zone):
            return exhausted_error(inst_project, zone)
        region = zone.rsplit("-", 1)[0]
        limit = self.state.cpu_limit(region)
        if limit is not None and self.state.cpu_usage(inst_project, region) + cpus > limit:
            return quota_error(limit, region)
        return None

    def _op(self, inst: Instance, op_type: str, rid: str | None, **kwargs: Any) -> Response:
        op = self.state.new_operation(
            inst.project,
            inst.zone,
            op_type,
            target_link=instance_link(inst.project, inst.zone, inst.name),
            target_id=inst.id,
            request_id=rid,
            **kwargs,
        )
        return op_response(op, self.state)

    # ------------------------------------------------------------------ reads

    def get(self, request: Request) -> Response:
        return Response(200, render_instance(self._live(request), self.state.now()))

    def list_instances(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        now = self.state.now()
        items = [render_instance(i, now) for i in self.state.instances_in(project, zone)]
        return list_response(
            request, "compute#instanceList", f"projects/{project}/zones/{zone}/instances", items
        )

    def aggregated_list(self, request: Request) -> Response:
        """instances.aggregatedList: the project's instances of every zone,
        keyed ``zones/<zone>``, with the same ``filter`` as instances.list."""
        project = request.params["project"]
        now = self.state.now()
        scopes: dict[str, list[dict[str, Any]]] = {f"zones/{z}": [] for z in self.state.zones}
        for inst in self.state.instances_in(project):
            scopes.setdefault(f"zones/{inst.zone}", []).append(render_instance(inst, now))
        return aggregated_response(
            request,
            "compute#instanceAggregatedList",
            f"projects/{project}/aggregated/instances",
            "instances",
            scopes,
            unreachable=[f"zones/{z}" for z in sorted(self.state.unreachable)],
        )

    def serial_port(self, request: Request) -> Response:
        """Console output: ``start`` is a byte offset (negative counts from the
        end), clamped to the oldest retained byte; ``next`` is where to resume."""
        inst = self._live(request)
        try:
            port = int(request.arg("port") or 1)
            start = int(request.arg("start") or 0)
        except ValueError:
            raise invalid("start", request.arg("start"), "Must be an integer.") from None
        if not 1 <= port <= 4:
            raise invalid("port", port, "Must be between 1 and 4.")
        now = self.state.now()
        data = "".join(t for at, t in inst.serial if at <= now).encode() if port == 1 else b""
        oldest = max(0, len(data) - SERIAL_BUFFER)
        if start < 0:
            start = max(oldest, len(data) + start)
        start = min(max(start, oldest), len(data))
        return Response(
            200,
            {
                "kind": "compute#serialPortOutput",
                "contents": data[start:].decode("utf-8", "replace"),
                "start": str(start),
                "next": str(len(data)),
                "selfLink": f"{instance_link(inst.project, inst.zone, inst.name)}/serialPort",
            },
        )

    # ----------------------------------------------------------------- insert

    def insert(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        body = body_of(request)
        name = check_name("resource.name", body.get("name"))
        if self.state.instance(project, zone, name) is not None:
            raise already_exists(self._path(project, zone, name))
        plan = plan_instance(self.state, project, zone, name, body)
        failure = plan.failure or self._capacity_failure(
            project, zone, plan.machine_type.guest_cpus
        )
        inst = commit(self.state, plan, failure=failure)
        done = inst.timeline.ends_at()
        return self._op(inst, "insert", rid, done_at=done, error=failure)

    # -------------------------------------------------------------- lifecycle

    def delete(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        if inst.extra.get("deletionProtection"):
            # 400 invalidResourceUsage, as Compute Engine answers it
            # (hashicorp/terraform-provider-google#1211).
            raise HttpError(
                400,
                "Invalid resource usage: 'Resource cannot be deleted if it's "
                "protected against deletion.'.",
                reason="invalidResourceUsage",
            )
        now = self.state.now()
        if inst.timeline.steps[-1][1] != GONE:
            end = now + self.state.transition_delay
            if inst.timeline.at(now) == "TERMINATED":
                inst.timeline.then(now, (end, GONE))
            else:
                inst.timeline.then(now, (now, "STOPPING"), (end, GONE))
                inst.last_stop = end
            for attached in inst.disks:
                disk = self.state.disk(inst.project, inst.zone, attached.disk)
                if disk is None:
                    continue
                if attached.auto_delete:
                    disk.timeline.then(now, (end, GONE))
                else:
                    disk.last_detach = end
        return self._op(inst, "delete", rid, done_at=inst.timeline.ends_at())

    def set_deletion_protection(self, request: Request) -> Response:
        """instances.setDeletionProtection: the ``deletionProtection`` query
        parameter, true when absent as in the API's discovery document
        (https://cloud.google.com/compute/docs/reference/rest/v1/instances/setDeletionProtection)."""
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        value = (request.arg("deletionProtection") or "true").lower()
        if value not in ("true", "false"):
            raise invalid("deletionProtection", value, "Must be a boolean.")
        inst.extra["deletionProtection"] = value == "true"
        return self._op(inst, "setDeletionProtection", rid)

    def stop(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        now = self.state.now()
        final = inst.timeline.steps[-1][1]
        if final == GONE:
            raise not_ready(self._path(inst.project, inst.zone, inst.name))
        if final != "TERMINATED":
            end = now + self.state.transition_delay
            inst.timeline.then(now, (now, "STOPPING"), (end, "TERMINATED"))
            inst.last_stop = end
            inst.serial.append(
                (now, "\r\n[  OK  ] Reached target System Power Off.\r\nreboot: Power down\r\n")
            )
        return self._op(inst, "stop", rid, done_at=inst.timeline.ends_at())

    def start(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        now = self.state.now()
        status, final = inst.timeline.at(now), inst.timeline.steps[-1][1]
        if final == GONE or status == "STOPPING":
            raise not_ready(self._path(inst.project, inst.zone, inst.name))
        if status != "TERMINATED":
            return self._op(inst, "start", rid)
        failure = self._capacity_failure(inst.project, inst.zone, inst.machine_type.guest_cpus)
        if failure is not None:
            return self._op(inst, "start", rid, error=failure)
        end = now + self.state.transition_delay
        inst.timeline.then(now, (now, "STAGING"), (end, "RUNNING"))
        inst.last_start = end
        for nic in inst.nics:
            if nic.access is not None:
                nic.nat_ip = self.state.next_nat_ip()
        boot_log(inst, now, self.state.transition_delay)
        return self._op(inst, "start", rid, done_at=end)

    def reset(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        now = self.state.now()
        if inst.timeline.at(now) != "RUNNING" or inst.timeline.steps[-1][1] != "RUNNING":
            raise not_ready(self._path(inst.project, inst.zone, inst.name))
        inst.serial.append((now, "\r\nreboot: Restarting system\r\n"))
        boot_log(inst, now, self.state.transition_delay)
        inst.last_start = now
        return self._op(inst, "reset", rid)

    def set_labels(self, request: Request) -> Response:
        """setLabels needs the current labelFingerprint: a stale or missing one answers
        412 conditionNotMet (googleapis/google-cloud-go#7802, skypilot-org/skypilot#4571)."""
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        body = body_of(request)
        if body.get("labelFingerprint") != fingerprint(inst.labels):
            raise HttpError(
                412,
                "Labels fingerprint either invalid or resource labels have changed",
                reason="conditionNotMet",
                location="If-Match",
                location_type="header",
            )
        inst.labels = check_labels("labels", body.get("labels"))
        return self._op(inst, "setLabels", rid)

    # ------------------------------------------------------------------ disks

    def detach_disk(self, request: Request) -> Response:
        """instances.detachDisk by ``deviceName``; a boot disk only while the
        instance is TERMINATED (https://cloud.google.com/compute/docs/disks/detach-reattach-boot-disk).
        The disk stays, unattached and billed, until disks.delete."""
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        device = request.arg("deviceName") or ""
        attached = next((a for a in inst.disks if a.device_name == device), None)
        if attached is None:
            raise invalid("deviceName", device, "No attached disk has this device name.")
        if attached.boot and inst.timeline.at(self.state.now()) != "TERMINATED":
            raise boot_disk_refused("detach")
        inst.disks.remove(attached)
        disk = self.state.disk(inst.project, inst.zone, attached.disk)
        if disk is not None:
            disk.last_detach = self.state.now()
        return self._op(inst, "detachDisk", rid)

    def attach_disk(self, request: Request) -> Response:
        """instances.attachDisk of an existing disk (``source``) that no instance
        uses; ``boot`` only on a TERMINATED instance without a boot disk;
        ``autoDelete`` as given (false when absent, AttachedDisk.auto_delete)."""
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        inst = self._live(request)
        body = body_of(request)
        source = str(body.get("source") or "")
        try:
            ref = parse_ref(source, "disks")
        except RefError:
            raise invalid("resource.source", source, "Must be a URL to a disk.") from None
        disk = self.state.disk(ref.project or inst.project, ref.zone or inst.zone, ref.name)
        if disk is None or (ref.zone or inst.zone) != inst.zone:
            raise not_found(f"projects/{inst.project}/zones/{inst.zone}/disks/{ref.name}")
        users = self.state.disk_users(disk)
        if users:
            raise HttpError(
                400,
                f"The disk resource '{disk_link(disk.project, disk.zone, disk.name)}' is already "
                f"being used by '{instance_link(users[0].project, users[0].zone, users[0].name)}'",
                reason="resourceInUseByAnotherResource",
            )
        boot = bool(body.get("boot"))
        if boot and inst.timeline.at(self.state.now()) != "TERMINATED":
            raise boot_disk_refused("attach")
        if boot and any(a.boot for a in inst.disks):
            raise invalid("resource.boot", "true", "The instance already has a boot disk.")
        disk.last_attach = self.state.now()
        index = 0 if boot else max((a.index for a in inst.disks), default=0) + 1
        inst.disks.insert(
            0 if boot else len(inst.disks),
            Attached(
                disk=disk.name,
                boot=boot,
                auto_delete=bool(body.get("autoDelete", False)),
                device_name=str(body.get("deviceName") or disk.name),
                mode=str(body.get("mode") or "READ_WRITE"),
                interface=str(body.get("interface") or "SCSI"),
                index=index,
                size_gb=disk.size_gb,
                architecture=disk.architecture,
                licenses=list(disk.licenses),
            ),
        )
        return self._op(inst, "attachDisk", rid)
