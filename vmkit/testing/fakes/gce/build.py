"""Validate an Instance body (instances.insert, bulkInsert's instanceProperties) and create it.

:func:`plan_instance` checks everything the API refuses synchronously with
400/404 and returns a :class:`Plan`; :func:`commit` turns a plan into records
and schedules its lifecycle. Defaults are the API's, not gcloud's: a disk's
``autoDelete`` is false unless asked, ``initializeParams.diskType`` is
pd-standard, ``scheduling`` is MIGRATE / automaticRestart for standard VMs
(AttachedDisk.auto_delete, AttachedDiskInitializeParams.disk_type and
Scheduling.on_host_maintenance in google/cloud/compute_v1/types/compute.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vmkit.testing.fakes._http import HttpError
from vmkit.testing.fakes.gce.catalog import ACCELERATOR_TYPES, MachineTypeSpec
from vmkit.testing.fakes.gce.common import check_labels, check_name
from vmkit.testing.fakes.gce.errors import conflict_error, invalid, not_found
from vmkit.testing.fakes.gce.render import disk_link, zone_link
from vmkit.testing.fakes.gce.shapes import (
    LINK_BASE,
    RefError,
    parse_ref,
)
from vmkit.testing.fakes.gce.state import (
    Attached,
    Disk,
    GceState,
    Instance,
    Nic,
    OpError,
    Timeline,
)

__all__ = [
    "Plan",
    "boot_log",
    "commit",
    "plan_instance",
    "plan_new_disk",
]

DISK_TYPES = frozenset({"pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced"})
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_METADATA_LIMIT = 512 * 1024


@dataclass
class DiskPlan:
    name: str
    boot: bool
    auto_delete: bool
    device_name: str
    mode: str
    interface: str
    index: int
    size_gb: int
    disk_type: str
    architecture: str
    licenses: list[str]
    existing: bool
    labels: dict[str, str] = field(default_factory=dict)
    source_image: str | None = None
    source_image_id: str | None = None
    source_snapshot: str | None = None
    source_snapshot_id: str | None = None


@dataclass
class Plan:
    project: str
    zone: str
    name: str
    machine_type: MachineTypeSpec
    disks: list[DiskPlan]
    nics: list[dict[str, Any]]
    labels: dict[str, str]
    metadata: list[dict[str, str]]
    tags: list[str]
    scheduling: dict[str, Any]
    shielded: dict[str, bool]
    accelerators: list[dict[str, Any]]
    extra: dict[str, Any]
    #: a failure the API only reports on the operation (a boot disk name taken)
    failure: OpError | None = None


def _machine_type(state: GceState, zone: str, body: dict[str, Any], prefix: str) -> MachineTypeSpec:
    value = body.get("machineType") or ""
    field_name = f"{prefix}.machineType"
    try:
        ref = parse_ref(str(value), "machineTypes")
    except RefError:
        raise invalid(
            field_name, value, "Must be a URL to a valid Compute resource of the correct type."
        ) from None
    if ref.zone is not None and ref.zone != zone:
        raise invalid(field_name, value, f"Machine type must be in zone '{zone}'.")
    spec = state.machine_types.get(ref.name)
    if spec is None or (spec.zones is not None and zone not in spec.zones):
        raise invalid(
            field_name,
            value,
            f"Machine type with name '{ref.name}' does not exist in zone '{zone}'.",
        )
    return spec


def _plan_disks(
    state: GceState, project: str, zone: str, name: str, body: dict[str, Any], prefix: str
) -> tuple[list[DiskPlan], OpError | None]:
    disks = body.get("disks") or []
    if not isinstance(disks, list) or not disks:
        raise invalid(f"{prefix}.disks", "", "At least one boot disk is required.")
    boots = [i for i, d in enumerate(disks) if d.get("boot")]
    if len(boots) > 1:
        raise invalid(f"{prefix}.disks[{boots[1]}].boot", "true", "Only one boot disk is allowed.")
    boot_index = boots[0] if boots else 0
    plans: list[DiskPlan] = []
    failure: OpError | None = None
    for i, disk in enumerate(disks):
        field_name = f"{prefix}.disks[{i}]"
        params = disk.get("initializeParams")
        source = disk.get("source")
        boot = i == boot_index
        common: dict[str, Any] = {
            "boot": boot,
            "auto_delete": bool(disk.get("autoDelete", False)),
            "device_name": disk.get("deviceName") or f"persistent-disk-{i}",
            "mode": disk.get("mode") or "READ_WRITE",
            "interface": disk.get("interface") or "SCSI",
            "index": i,
        }
        if source and params:
            raise invalid(
                f"{field_name}.source", source, "Cannot set both source and initializeParams."
            )
        if source:
            try:
                ref = parse_ref(str(source), "disks")
            except RefError:
                raise invalid(
                    f"{field_name}.source",
                    source,
                    "Must be a URL to a valid Compute resource of the correct type.",
                ) from None
            existing = state.disk(ref.project or project, ref.zone or zone, ref.name)
            if existing is None:
                raise not_found(
                    f"projects/{ref.project or project}/zones/{ref.zone or zone}/disks/{ref.name}"
                )
            users = state.disk_users(existing)
            if users and common["mode"] == "READ_WRITE":
                user = users[0]
                raise HttpError(
                    400,
                    f"The disk resource '{disk_link(project, zone, existing.name)}' is already "
                    f"being used by '{zone_link(user.project, user.zone)}/instances/{user.name}'",
                    reason="resourceInUseByAnotherResource",
                )
            plans.append(
                DiskPlan(
                    name=existing.name,
                    size_gb=existing.size_gb,
                    disk_type=existing.disk_type,
                    architecture=existing.architecture,
                    licenses=list(existing.licenses),
                    existing=True,
                    **common,
                )
            )
            continue
        if not isinstance(params, dict):
            raise invalid(field_name, "", "A disk needs either source or initializeParams.")
        plan = plan_new_disk(state, project, zone, name, i, params, field_name, common)
        if state.disk(project, zone, plan.name) is not None and failure is None:
            failure = conflict_error(f"projects/{project}/zones/{zone}/disks/{plan.name}")
        plans.append(plan)
    return plans, failure


def plan_new_disk(
    state: GceState,
    project: str,
    zone: str,
    name: str,
    index: int,
    params: dict[str, Any],
    field_name: str,
    common: dict[str, Any],
) -> DiskPlan:
    image_ref = params.get("sourceImage")
    snapshot_ref = params.get("sourceSnapshot")
    plan = DiskPlan(
        name=params.get("diskName") or (name if common["boot"] else f"{name}-{index}"),
        size_gb=0,
        disk_type="pd-standard",
        architecture="X86_64",
        licenses=[],
        existing=False,
        labels=check_labels(f"{field_name}.initializeParams.labels", params.get("labels")),
        **common,
    )
    source_size = 0
    if image_ref:
        try:
            ref = parse_ref(str(image_ref), "images")
            image = state.image(ref.project or project, ref.name, family=ref.family)
        except RefError:
            image = None
        if image is None:
            raise invalid(
                f"{field_name}.initializeParams.sourceImage",
                image_ref,
                "The referenced image resource cannot be found.",
            )
        spec = image.spec
        plan.source_image = f"{LINK_BASE}/projects/{spec.project}/global/images/{spec.name}"
        plan.source_image_id = image.id
        plan.architecture = spec.architecture
        plan.licenses = [f"{LINK_BASE}/projects/{spec.project}/global/licenses/{spec.license}"]
        source_size = spec.disk_size_gb
    elif snapshot_ref:
        try:
            sref = parse_ref(str(snapshot_ref), "snapshots")
            snap = state.snapshot(sref.project or project, sref.name)
        except RefError:
            snap = None
        if snap is None or snap.timeline.at(state.now()) != "READY":
            raise invalid(
                f"{field_name}.initializeParams.sourceSnapshot",
                snapshot_ref,
                "The referenced snapshot resource cannot be found or is not ready.",
            )
        plan.source_snapshot = f"{LINK_BASE}/projects/{snap.project}/global/snapshots/{snap.name}"
        plan.source_snapshot_id = snap.id
        plan.architecture = snap.architecture
        plan.licenses = list(snap.licenses)
        source_size = snap.disk_size_gb
    elif common["boot"]:
        raise invalid(
            f"{field_name}.initializeParams",
            "",
            "A boot disk needs a sourceImage or a sourceSnapshot.",
        )
    size = int(params.get("diskSizeGb") or source_size or 10)
    if size < source_size:
        raise invalid(
            f"{field_name}.initializeParams.diskSizeGb",
            size,
            f"Requested disk size cannot be smaller than the image size ({source_size} GB)",
        )
    plan.size_gb = size
    if params.get("diskType"):
        try:
            plan.disk_type = parse_ref(str(params["diskType"]), "diskTypes").name
        except RefError:
            plan.disk_type = str(params["diskType"])
        if plan.disk_type not in DISK_TYPES:
            raise invalid(
                f"{field_name}.initializeParams.diskType", params["diskType"], "Unknown disk type."
            )
    return plan


def _plan_nics(
    state: GceState, project: str, zone: str, body: dict[str, Any], prefix: str
) -> list[dict[str, Any]]:
    nics = body.get("networkInterfaces") or []
    if not isinstance(nics, list) or not nics:
        raise invalid(
            f"{prefix}.networkInterfaces", "", "At least one network interface is required."
        )
    region = zone.rsplit("-", 1)[0]
    planned = []
    for j, nic in enumerate(nics):
        network = nic.get("network") or "global/networks/default"
        try:
            ref = parse_ref(str(network), "networks")
        except RefError:
            raise invalid(
                f"{prefix}.networkInterfaces[{j}].network",
                network,
                "Must be a URL to a valid Compute resource of the correct type.",
            ) from None
        if ref.name not in state.networks:
            raise not_found(f"projects/{ref.project or project}/global/networks/{ref.name}")
        access = None
        if nic.get("accessConfigs"):
            config = nic["accessConfigs"][0]
            access = {
                "type": config.get("type") or "ONE_TO_ONE_NAT",
                "name": config.get("name") or "External NAT",
                "networkTier": config.get("networkTier") or "PREMIUM",
            }
            if config.get("natIP"):
                access["staticNatIP"] = config["natIP"]
        planned.append(
            {
                "name": f"nic{j}",
                "network": f"{LINK_BASE}/projects/{project}/global/networks/{ref.name}",
                "subnetwork": nic.get("subnetwork")
                or f"{LINK_BASE}/projects/{project}/regions/{region}/subnetworks/{ref.name}",
                "ip": nic.get("networkIP"),
                "access": access,
            }
        )
    return planned


def _plan_scheduling(body: dict[str, Any], prefix: str, has_accelerators: bool) -> dict[str, Any]:
    given = dict(body.get("scheduling") or {})
    model = given.get("provisioningModel") or "STANDARD"
    spot = model == "SPOT" or bool(given.get("preemptible"))
    field_name = f"{prefix}.scheduling"
    if spot:
        if given.get("onHostMaintenance", "TERMINATE") != "TERMINATE":
            raise invalid(
                f"{field_name}.onHostMaintenance",
                given["onHostMaintenance"],
                "Preemptible and Spot instances must terminate on host maintenance.",
            )
        if given.get("automaticRestart") is True:
            raise invalid(
                f"{field_name}.automaticRestart",
                "true",
                "Preemptible and Spot instances cannot be automatically restarted.",
            )
        given.setdefault("onHostMaintenance", "TERMINATE")
        given.setdefault("automaticRestart", False)
        if model == "SPOT":
            given.setdefault("instanceTerminationAction", "STOP")
    given.setdefault("onHostMaintenance", "MIGRATE")
    given.setdefault("automaticRestart", True)
    given.setdefault("preemptible", False)
    given["provisioningModel"] = model
    if has_accelerators and given["onHostMaintenance"] != "TERMINATE":
        # 400 badRequest, openshift/release#63296 and loft-sh/devpod#973 (g2 types too).
        raise HttpError(
            400,
            "Instances with guest accelerators do not support live migration.",
            reason="badRequest",
        )
    return given


def _plan_accelerators(
    zone: str, project: str, body: dict[str, Any], prefix: str, machine: MachineTypeSpec
) -> list[dict[str, Any]]:
    planned = []
    for k, acc in enumerate(body.get("guestAccelerators") or []):
        value = acc.get("acceleratorType") or ""
        try:
            ref = parse_ref(str(value), "acceleratorTypes")
        except RefError:
            ref = None
        if ref is None or ref.name not in ACCELERATOR_TYPES or (ref.zone or zone) != zone:
            raise invalid(
                f"{prefix}.guestAccelerators[{k}].acceleratorType",
                value,
                f"Accelerator type does not exist in zone '{zone}'.",
            )
        planned.append(
            {
                "acceleratorType": f"{zone_link(project, zone)}/acceleratorTypes/{ref.name}",
                "acceleratorCount": int(acc.get("acceleratorCount") or 1),
            }
        )
    if not planned:
        planned = [
            {
                "acceleratorType": f"{zone_link(project, zone)}/acceleratorTypes/{kind}",
                "acceleratorCount": count,
            }
            for kind, count in machine.accelerators
        ]
    return planned


def _plan_metadata(body: dict[str, Any], prefix: str) -> list[dict[str, str]]:
    items = (body.get("metadata") or {}).get("items") or []
    seen: set[str] = set()
    size = 0
    for item in items:
        key = str(item.get("key", ""))
        if not _METADATA_KEY.match(key) or key in seen:
            raise invalid(
                f"{prefix}.metadata.items.key",
                key,
                "Metadata keys must be unique and match [a-zA-Z0-9-_]{1,128}.",
            )
        seen.add(key)
        size += len(key) + len(str(item.get("value", "")))
    if size > _METADATA_LIMIT:
        raise invalid(f"{prefix}.metadata", "...", "Metadata must not exceed 512 KB in total.")
    return [{"key": str(i["key"]), "value": str(i.get("value", ""))} for i in items]


def plan_instance(
    state: GceState,
    project: str,
    zone: str,
    name: str,
    body: dict[str, Any],
    prefix: str = "resource",
) -> Plan:
    """Validate ``body`` for an instance called ``name``; raises HttpError (400/404)."""
    check_name(f"{prefix}.name", name)
    machine = _machine_type(state, zone, body, prefix)
    disks, failure = _plan_disks(state, project, zone, name, body, prefix)
    boot = next(d for d in disks if d.boot)
    if boot.architecture != machine.architecture:
        raise invalid(
            f"{prefix}.disks[{boot.index}]",
            boot.name,
            f"Requested boot disk architecture ({boot.architecture}) is not compatible "
            f"with machine type architecture ({machine.architecture}).",
        )
    accelerators = _plan_accelerators(zone, project, body, prefix, machine)
    tags = list((body.get("tags") or {}).get("items") or [])
    for tag in tags:
        check_name(f"{prefix}.tags.items", tag)
    shielded = {"enableSecureBoot": False, "enableVtpm": True, "enableIntegrityMonitoring": True}
    shielded.update({k: bool(v) for k, v in (body.get("shieldedInstanceConfig") or {}).items()})
    extra: dict[str, Any] = {
        k: body[k]
        for k in (
            "description",
            "canIpForward",
            "deletionProtection",
            "serviceAccounts",
            "hostname",
            "minCpuPlatform",
        )
        if k in body
    }
    return Plan(
        project=project,
        zone=zone,
        name=name,
        machine_type=machine,
        disks=disks,
        nics=_plan_nics(state, project, zone, body, prefix),
        labels=check_labels(f"{prefix}.labels", body.get("labels")),
        metadata=_plan_metadata(body, prefix),
        tags=tags,
        scheduling=_plan_scheduling(body, prefix, bool(accelerators)),
        shielded=shielded,
        accelerators=accelerators,
        extra=extra,
        failure=failure,
    )


def boot_log(inst: Instance, at: float, delay: float) -> None:
    """Schedule the console lines of one boot (firmware at STAGING, OS at RUNNING)."""
    keys = {item["key"] for item in inst.metadata}
    inst.serial.append((at, "SeaBIOS (version 1.8.2-google)\r\nBooting from Hard Disk 0...\r\n"))
    lines = [
        "[    0.000000] Linux version 6.8.0-1019-gcp (buildd@lcy02-amd64-034)\r\n",
        "[    3.120456] cloud-init[512]: Cloud-init v. 24.4 running 'init' at boot.\r\n",
        "[    4.201773] google_guest_agent[640]: GCE Agent Started.\r\n",
    ]
    if "startup-script" in keys:
        lines.append(
            "[    5.301112] google_metadata_script_runner[701]: Starting startup scripts.\r\n"
        )
    if "user-data" in keys:
        lines.append(
            "[    6.402233] cloud-init[812]: Cloud-init v. 24.4 running 'modules:final'.\r\n"
        )
    lines.append(f"\r\n{inst.name} login: ")
    inst.serial.append((at + delay / 2, "".join(lines)))


def commit(state: GceState, plan: Plan, *, failure: OpError | None) -> Instance:
    """Create the instance of ``plan``. With a failure it shows PROVISIONING until its
    operation is DONE and then disappears, creating nothing else (as a failed insert
    does, googleapis/nodejs-compute#459)."""
    now = state.now()
    delay = state.transition_delay
    nics = [
        Nic(
            name=n["name"],
            network=n["network"],
            subnetwork=n["subnetwork"],
            ip=n["ip"] or state.next_internal_ip(),
            access={k: v for k, v in n["access"].items() if k != "staticNatIP"}
            if n["access"]
            else None,
            nat_ip=(n["access"].get("staticNatIP") or state.next_nat_ip()) if n["access"] else None,
        )
        for n in plan.nics
    ]
    if failure is not None:
        steps = [(now, "PROVISIONING"), (now + max(delay / 2, state.operation_delay), "GONE")]
    elif state.hold:
        steps = [(now, "PROVISIONING"), (now + delay / 2, "STAGING")]
        state.held.add((plan.project, plan.zone, plan.name))
    else:
        steps = [(now, "PROVISIONING"), (now + delay / 2, "STAGING"), (now + delay, "RUNNING")]
    timeline = Timeline(steps)
    inst = Instance(
        project=plan.project,
        zone=plan.zone,
        name=plan.name,
        id=state.new_id(),
        created=now,
        machine_type=plan.machine_type,
        timeline=timeline,
        labels=plan.labels,
        metadata=plan.metadata,
        tags=plan.tags,
        nics=nics,
        disks=[
            Attached(
                disk=d.name,
                boot=d.boot,
                auto_delete=d.auto_delete,
                device_name=d.device_name,
                mode=d.mode,
                interface=d.interface,
                index=d.index,
                size_gb=d.size_gb,
                architecture=d.architecture,
                licenses=d.licenses,
            )
            for d in plan.disks
        ],
        scheduling=plan.scheduling,
        shielded=plan.shielded,
        accelerators=plan.accelerators,
        extra=plan.extra,
    )
    state.instances[(plan.project, plan.zone, plan.name)] = inst
    if failure is not None:
        return inst
    inst.last_start = None if state.hold else now + delay
    for d in plan.disks:
        if d.existing:
            taken = state.disk(plan.project, plan.zone, d.name)
            if taken is not None:
                taken.last_attach = now
            continue
        state.disks[(plan.project, plan.zone, d.name)] = Disk(
            project=plan.project,
            zone=plan.zone,
            name=d.name,
            id=state.new_id(),
            created=now,
            size_gb=d.size_gb,
            disk_type=d.disk_type,
            architecture=d.architecture,
            licenses=d.licenses,
            timeline=Timeline([(now, "CREATING"), (now + delay / 2, "READY")]),
            source_image=d.source_image,
            source_image_id=d.source_image_id,
            source_snapshot=d.source_snapshot,
            source_snapshot_id=d.source_snapshot_id,
            labels=d.labels,
            last_attach=now,
        )
    boot_log(inst, now + delay / 2, delay)
    return inst
