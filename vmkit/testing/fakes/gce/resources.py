"""disks, snapshots, firewalls, images and machineTypes of the Compute Engine fake.

Firewalls are global resources that appear when their insert operation is
DONE; snapshots go CREATING -> UPLOADING -> READY
(https://cloud.google.com/compute/docs/reference/rest/v1/snapshots, status).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.gce.build import plan_new_disk
from vmkit.testing.fakes.gce.common import (
    body_of,
    check_labels,
    check_name,
    list_response,
    op_response,
    replay,
    zone_of,
)
from vmkit.testing.fakes.gce.errors import already_exists, invalid, not_found
from vmkit.testing.fakes.gce.render import (
    disk_link,
    instance_link,
    render_disk,
    render_firewall,
    render_image,
    render_machine_type,
    render_snapshot,
)
from vmkit.testing.fakes.gce.shapes import LINK_BASE, RefError, fingerprint, parse_ref
from vmkit.testing.fakes.gce.state import GONE, Disk, Firewall, GceState, Snapshot, Timeline

__all__ = ["ResourceApi"]

_PROTOCOLS = frozenset({"tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"})
_PORT_RE = re.compile(r"^\d{1,5}(-\d{1,5})?$")
_FIREWALL_FIELDS = (
    "description",
    "network",
    "priority",
    "sourceRanges",
    "destinationRanges",
    "sourceTags",
    "targetTags",
    "sourceServiceAccounts",
    "targetServiceAccounts",
    "allowed",
    "denied",
    "direction",
    "logConfig",
    "disabled",
)


def _stale_fingerprint() -> HttpError:
    return HttpError(
        412,
        "Labels fingerprint either invalid or resource labels have changed",
        reason="conditionNotMet",
        location="If-Match",
        location_type="header",
    )


class ResourceApi:
    """Handlers for disks, snapshots, firewalls, images and machine types."""

    def __init__(self, state: GceState) -> None:
        self.state = state

    # ------------------------------------------------------------------ disks

    def _disk(self, request: Request) -> Any:
        project, zone = zone_of(self.state, request)
        name = request.params["disk"]
        disk = self.state.disk(project, zone, name)
        if disk is None:
            raise not_found(f"projects/{project}/zones/{zone}/disks/{name}")
        return disk

    def disk_get(self, request: Request) -> Response:
        return Response(200, render_disk(self.state, self._disk(request), self.state.now()))

    def disk_list(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        now = self.state.now()
        items = [render_disk(self.state, d, now) for d in self.state.disks_in(project, zone)]
        return list_response(
            request, "compute#diskList", f"projects/{project}/zones/{zone}/disks", items
        )

    def disk_insert(self, request: Request) -> Response:
        """disks.insert from a snapshot (``sourceSnapshot``) or an image (the
        ``sourceImage`` query parameter or field); an empty disk otherwise
        (https://cloud.google.com/compute/docs/reference/rest/v1/disks/insert)."""
        project, zone = zone_of(self.state, request)
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        body = body_of(request)
        name = check_name("resource.name", body.get("name"))
        if self.state.disk(project, zone, name) is not None:
            raise already_exists(f"projects/{project}/zones/{zone}/disks/{name}")
        image_ref = request.arg("sourceImage") or body.get("sourceImage")
        params = {
            "sourceSnapshot": body.get("sourceSnapshot"),
            "sourceImage": image_ref,
            "diskSizeGb": body.get("sizeGb"),
            "diskType": body.get("type"),
            "labels": body.get("labels"),
        }
        common = {
            "boot": False,
            "auto_delete": False,
            "device_name": name,
            "mode": "READ_WRITE",
            "interface": "SCSI",
            "index": 0,
        }
        plan = plan_new_disk(
            self.state,
            project,
            zone,
            name,
            0,
            {k: v for k, v in params.items() if v},
            "resource",
            common,
        )
        now = self.state.now()
        ready = now + self.state.operation_delay
        disk = Disk(
            project=project,
            zone=zone,
            name=name,
            id=self.state.new_id(),
            created=now,
            size_gb=plan.size_gb,
            disk_type=plan.disk_type,
            architecture=plan.architecture,
            licenses=plan.licenses,
            timeline=Timeline([(now, "CREATING"), (ready, "READY")]),
            source_image=plan.source_image,
            source_image_id=plan.source_image_id,
            source_snapshot=plan.source_snapshot,
            source_snapshot_id=plan.source_snapshot_id,
            labels=plan.labels,
        )
        self.state.disks[(project, zone, name)] = disk
        op = self.state.new_operation(
            project,
            zone,
            "insert",
            target_link=disk_link(project, zone, name),
            target_id=disk.id,
            done_at=ready,
            request_id=rid,
        )
        return op_response(op, self.state)

    def disk_delete(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        disk = self._disk(request)
        users = self.state.disk_users(disk)
        if users:
            user = users[0]
            raise HttpError(
                400,
                f"The disk resource '{disk_link(disk.project, disk.zone, disk.name)}' is already "
                f"being used by '{instance_link(user.project, user.zone, user.name)}'",
                reason="resourceInUseByAnotherResource",
            )
        now = self.state.now()
        end = now + self.state.operation_delay
        disk.timeline.then(now, (now, "DELETING"), (end, GONE))
        op = self.state.new_operation(
            disk.project,
            disk.zone,
            "delete",
            target_link=disk_link(disk.project, disk.zone, disk.name),
            target_id=disk.id,
            done_at=end,
            request_id=rid,
        )
        return op_response(op, self.state)

    def create_snapshot(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        disk = self._disk(request)
        body = body_of(request)
        name = check_name("resource.name", body.get("name"))
        if self.state.snapshot(disk.project, name) is not None:
            raise already_exists(f"projects/{disk.project}/global/snapshots/{name}")
        now = self.state.now()
        delay = self.state.transition_delay
        region = disk.zone.rsplit("-", 1)[0]
        location = (
            "us" if region.startswith("us-") else "eu" if region.startswith("europe-") else "asia"
        )
        snap = Snapshot(
            project=disk.project,
            name=name,
            id=self.state.new_id(),
            created=now,
            source_disk=disk_link(disk.project, disk.zone, disk.name),
            source_disk_id=disk.id,
            disk_size_gb=disk.size_gb,
            architecture=disk.architecture,
            licenses=list(disk.licenses),
            storage_location=location,
            timeline=Timeline(
                [(now, "CREATING"), (now + delay / 2, "UPLOADING"), (now + delay, "READY")]
            ),
            description=str(body.get("description") or ""),
            labels=check_labels("resource.labels", body.get("labels")),
        )
        self.state.snapshots[(disk.project, name)] = snap
        op = self.state.new_operation(
            disk.project,
            disk.zone,
            "createSnapshot",
            target_link=snap.source_disk,
            target_id=disk.id,
            done_at=now + delay,
            request_id=rid,
        )
        return op_response(op, self.state)

    # -------------------------------------------------------------- snapshots

    def _snapshot(self, request: Request) -> Snapshot:
        project, name = request.params["project"], request.params["snapshot"]
        snap = self.state.snapshot(project, name)
        if snap is None:
            raise not_found(f"projects/{project}/global/snapshots/{name}")
        return snap

    def snapshot_get(self, request: Request) -> Response:
        return Response(200, render_snapshot(self._snapshot(request), self.state.now()))

    def snapshot_list(self, request: Request) -> Response:
        project = request.params["project"]
        now = self.state.now()
        items = [render_snapshot(s, now) for s in self.state.snapshots_in(project)]
        return list_response(
            request, "compute#snapshotList", f"projects/{project}/global/snapshots", items
        )

    def snapshot_delete(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        snap = self._snapshot(request)
        now = self.state.now()
        end = now + self.state.operation_delay
        if snap.timeline.steps[-1][1] != GONE:
            snap.timeline.then(now, (now, "DELETING"), (end, GONE))
        op = self.state.new_operation(
            snap.project,
            None,
            "delete",
            target_link=f"{LINK_BASE}/projects/{snap.project}/global/snapshots/{snap.name}",
            target_id=snap.id,
            done_at=snap.timeline.ends_at(),
            request_id=rid,
        )
        return op_response(op, self.state)

    def snapshot_set_labels(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        project, name = request.params["project"], request.params["resource"]
        snap = self.state.snapshot(project, name)
        if snap is None:
            raise not_found(f"projects/{project}/global/snapshots/{name}")
        body = body_of(request)
        if body.get("labelFingerprint") != fingerprint(snap.labels):
            raise _stale_fingerprint()
        snap.labels = check_labels("labels", body.get("labels"))
        op = self.state.new_operation(
            project,
            None,
            "setLabels",
            target_link=f"{LINK_BASE}/projects/{project}/global/snapshots/{name}",
            target_id=snap.id,
            request_id=rid,
        )
        return op_response(op, self.state)

    # -------------------------------------------------------------- firewalls

    def _firewall_body(self, project: str, given: dict[str, Any]) -> dict[str, Any]:
        """Normalize and validate a Firewall resource (fields of compute.py: Firewall)."""
        body = {k: given[k] for k in _FIREWALL_FIELDS if k in given}
        if "allowed" in body and "denied" in body:
            raise invalid(
                "resource.denied", "", "A firewall rule cannot set both allowed and denied."
            )
        if not body.get("allowed") and not body.get("denied"):
            raise invalid("resource.allowed", "", "A firewall rule needs allowed or denied.")
        for kind in ("allowed", "denied"):
            for i, rule in enumerate(body.get(kind) or []):
                protocol = str(rule.get("IPProtocol", "")).lower()
                if protocol not in _PROTOCOLS and not protocol.isdigit():
                    raise invalid(f"resource.{kind}[{i}].IPProtocol", protocol, "Unknown protocol.")
                for port in rule.get("ports") or []:
                    if protocol not in ("tcp", "udp", "sctp", "all") or not _PORT_RE.match(
                        str(port)
                    ):
                        raise invalid(f"resource.{kind}[{i}].ports", port, "Invalid port range.")
        network = str(body.get("network") or "global/networks/default")
        try:
            ref = parse_ref(network, "networks")
        except RefError:
            raise invalid(
                "resource.network", network, "Must be a URL to a valid Compute resource."
            ) from None
        if ref.name not in self.state.networks:
            raise not_found(f"projects/{ref.project or project}/global/networks/{ref.name}")
        body["network"] = (
            f"{LINK_BASE}/projects/{ref.project or project}/global/networks/{ref.name}"
        )
        priority = int(body.get("priority", 1000))
        if not 0 <= priority <= 65535:
            raise invalid("resource.priority", priority, "Must be between 0 and 65535.")
        body["priority"] = priority
        direction = body.get("direction") or "INGRESS"
        if direction not in ("INGRESS", "EGRESS"):
            raise invalid("resource.direction", direction, "Must be INGRESS or EGRESS.")
        body["direction"] = direction
        body.setdefault("description", "")
        body.setdefault("logConfig", {"enable": False})
        body.setdefault("disabled", False)
        return body

    def _firewall(self, request: Request) -> Firewall:
        project, name = request.params["project"], request.params["firewall"]
        fw = self.state.firewall(project, name)
        if fw is None:
            raise not_found(f"projects/{project}/global/firewalls/{name}")
        return fw

    def _fw_op(self, fw: Firewall, op_type: str, rid: str | None, **kwargs: Any) -> Response:
        op = self.state.new_operation(
            fw.project,
            None,
            op_type,
            target_link=f"{LINK_BASE}/projects/{fw.project}/global/firewalls/{fw.name}",
            target_id=fw.id,
            request_id=rid,
            **kwargs,
        )
        return op_response(op, self.state)

    def firewall_insert(self, request: Request) -> Response:
        project = request.params["project"]
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        given = body_of(request)
        name = check_name("resource.name", given.get("name"))
        existing = self.state.firewalls.get((project, name))
        if existing is not None and not existing.timeline.gone(self.state.now()):
            raise already_exists(f"projects/{project}/global/firewalls/{name}")
        now = self.state.now()
        ready = now + self.state.operation_delay
        fw = Firewall(
            project=project,
            name=name,
            id=self.state.new_id(),
            created=now,
            body=self._firewall_body(project, given),
            timeline=Timeline([(now, "PENDING"), (ready, "READY")]),
        )
        self.state.firewalls[(project, name)] = fw
        return self._fw_op(fw, "insert", rid, done_at=ready)

    def firewall_get(self, request: Request) -> Response:
        return Response(200, render_firewall(self._firewall(request)))

    def firewall_list(self, request: Request) -> Response:
        project = request.params["project"]
        items = [render_firewall(f) for f in self.state.firewalls_in(project)]
        return list_response(
            request, "compute#firewallList", f"projects/{project}/global/firewalls", items
        )

    def firewall_delete(self, request: Request) -> Response:
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        fw = self._firewall(request)
        now = self.state.now()
        end = now + self.state.operation_delay
        fw.timeline.then(now, (end, GONE))
        return self._fw_op(fw, "delete", rid, done_at=end)

    def firewall_patch(self, request: Request) -> Response:
        """patch merges the given fields; update (PUT) replaces the rule."""
        rid, answer = replay(self.state, request)
        if answer is not None:
            return answer
        fw = self._firewall(request)
        given = body_of(request)
        if given.get("name") not in (None, fw.name):
            raise invalid("resource.name", given["name"], "The name of a firewall cannot change.")
        merged = given if request.method == "PUT" else {**fw.body, **given}
        if request.method != "PUT" and ("allowed" in given or "denied" in given):
            merged.pop("denied" if "allowed" in given else "allowed", None)
        fw.body = self._firewall_body(fw.project, merged)
        return self._fw_op(fw, "patch" if request.method == "PATCH" else "update", rid)

    # ------------------------------------------------------- images and types

    def image_from_family(self, request: Request) -> Response:
        project, family = request.params["project"], request.params["family"]
        image = self.state.image(project, family, family=True)
        if image is None:
            raise not_found(f"projects/{project}/global/images/family/{family}")
        return Response(200, render_image(image))

    def image_get(self, request: Request) -> Response:
        project, name = request.params["project"], request.params["image"]
        image = self.state.image(project, name, family=False)
        if image is None:
            raise not_found(f"projects/{project}/global/images/{name}")
        return Response(200, render_image(image))

    def image_list(self, request: Request) -> Response:
        project = request.params["project"]
        items = [render_image(i) for i in self.state.images if i.spec.project == project]
        return list_response(
            request, "compute#imageList", f"projects/{project}/global/images", items
        )

    def _machine_type_id(self, name: str) -> str:
        return str(int(hashlib.sha256(name.encode()).hexdigest()[:15], 16))

    def machine_type_get(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        name = request.params["machine_type"]
        spec = self.state.machine_types.get(name)
        if spec is None or (spec.zones is not None and zone not in spec.zones):
            raise not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")
        return Response(200, render_machine_type(spec, project, zone, self._machine_type_id(name)))

    def machine_type_list(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        items = [
            render_machine_type(spec, project, zone, self._machine_type_id(spec.name))
            for spec in self.state.machine_types.values()
            if spec.zones is None or zone in spec.zones
        ]
        return list_response(
            request,
            "compute#machineTypeList",
            f"projects/{project}/zones/{zone}/machineTypes",
            items,
        )
