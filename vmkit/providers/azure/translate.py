"""Pure functions between vmkit's records and Azure Resource Manager's JSON shapes.

Nothing here calls Azure. Bodies are the REST shapes the azure-mgmt-* clients send
as they are (their models are mappings of the REST JSON): VirtualMachine,
NetworkInterface, PublicIPAddress, NetworkSecurityGroup, VirtualNetwork, Snapshot
(https://learn.microsoft.com/rest/api/compute/virtual-machines/create-or-update,
https://learn.microsoft.com/rest/api/virtualnetwork/).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from vmkit.errors import SpecError
from vmkit.machine import Machine, MachineState
from vmkit.provider import REPLICA_TAG, SPEC_TAG, WORKLOAD_TAG, ownership_labels
from vmkit.spec import Port, Workload

__all__ = [
    "ADMIN_USER",
    "IMAGE_TAG",
    "MACHINE_TAG",
    "MANAGED_TAG",
    "OPTION_NAMES",
    "OS_DISK_SKU",
    "SNAPSHOT_NAME_TAG",
    "SUBNET_NAME",
    "VNET_NAME",
    "Arch",
    "AzureOptions",
    "arm_id",
    "disk_size_gb",
    "failure_reason",
    "ip_name",
    "machine_id",
    "machine_state",
    "nic_body",
    "nic_name",
    "nsg_body",
    "nsg_name",
    "os_disk_name",
    "parse_id",
    "parse_options",
    "parse_replica",
    "parse_timestamp",
    "public_ip_body",
    "replica_name",
    "security_rules",
    "to_machine",
    "user_labels",
    "vm_body",
    "vm_properties",
    "vnet_body",
]

Arch = Literal["x86_64", "arm64"]

VM_TYPE = "Microsoft.Compute/virtualMachines"
NIC_TYPE = "Microsoft.Network/networkInterfaces"
PIP_TYPE = "Microsoft.Network/publicIPAddresses"
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
VNET_TYPE = "Microsoft.Network/virtualNetworks"
DISK_TYPE = "Microsoft.Compute/disks"
SNAPSHOT_TYPE = "Microsoft.Compute/snapshots"

#: Marks what vmkit made for every workload of a resource group (the virtual network).
MANAGED_TAG = "vmkit-managed"
MACHINE_TAG = "vmkit-machine"
SNAPSHOT_NAME_TAG = "vmkit-snapshot-name"
#: On a VM made from a snapshot: the snapshot's id (``Machine.image``), as such a VM has no
#: imageReference to read it from.
IMAGE_TAG = "vmkit-image"
#: The storage type of the OS disks vmkit makes.
OS_DISK_SKU = "StandardSSD_LRS"

VNET_NAME = "vmkit-vnet"
SUBNET_NAME = "vmkit-subnet"
VNET_PREFIX = "10.0.0.0/16"
# A /20 holds 4,091 NICs (Azure keeps five addresses of every subnet).
SUBNET_PREFIX = "10.0.0.0/20"
ADMIN_USER = "vmkit"
# Custom rules take priorities 100-4096; vmkit's start at 1000 and leave room below
# for rules a user adds by hand (network-security-groups-overview#security-rules).
FIRST_PRIORITY = 1000
# Azure's Ubuntu and Debian marketplace images have a 30 GiB OS disk, and Azure refuses
# an OS disk smaller than its image's ("The specified disk size ... is smaller than the
# size of the corresponding disk in the VM image").
IMAGE_DISK_GB = 30

OPTION_NAMES = ("arch", "subnet_id", "vm_size")

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)"
    r"(?:/(?P<child_type>[^/]+)/(?P<child>[^/]+))?$",
    re.IGNORECASE,
)
# Names of Compute resources: letters, digits, '_', '.', '-' (snapshots and disks 1-80).
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class AzureOptions:
    """``Workload.options["azure"]``, validated."""

    vm_size: str | None = None
    subnet_id: str | None = None
    arch: Arch = "x86_64"


@dataclass(frozen=True)
class ArmId:
    """The parts of an ARM resource id."""

    subscription: str
    resource_group: str
    provider_type: str
    name: str
    child_type: str | None = None
    child: str | None = None


def parse_id(resource_id: str) -> ArmId | None:
    """The parts of ``/subscriptions/.../resourceGroups/.../providers/NS/type/name[/c/n]``."""
    found = _ID.match(resource_id.strip())
    if found is None:
        return None
    return ArmId(
        found["sub"],
        found["rg"],
        f"{found['ns']}/{found['type']}",
        found["name"],
        found["child_type"],
        found["child"],
    )


def arm_id(subscription: str, resource_group: str, provider_type: str, name: str) -> str:
    """The ARM id of a resource of ``provider_type`` (e.g. ``Microsoft.Compute/disks``)."""
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/{provider_type}/{name}"
    )


def parse_options(workload: Workload) -> AzureOptions:
    """Validate ``options["azure"]``. Raises SpecError naming ``options.azure.<key>``."""
    options = workload.options_for("azure")
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise SpecError(
            f"options.azure.{unknown[0]}", f"unknown option; accepted: {', '.join(OPTION_NAMES)}"
        )
    arch = options.get("arch", "x86_64")
    if arch not in ("x86_64", "arm64"):
        raise SpecError("options.azure.arch", f"must be 'x86_64' or 'arm64', got {arch!r}")
    vm_size = options.get("vm_size")
    if vm_size is not None and (not isinstance(vm_size, str) or not vm_size.strip()):
        raise SpecError("options.azure.vm_size", f"must be a size name, got {vm_size!r}")
    subnet_id = options.get("subnet_id")
    if subnet_id is not None:
        parsed = parse_id(subnet_id) if isinstance(subnet_id, str) else None
        if (
            parsed is None
            or parsed.provider_type.lower() != VNET_TYPE.lower()
            or (parsed.child_type or "").lower() != "subnets"
        ):
            raise SpecError(
                "options.azure.subnet_id",
                "must be a subnet's ARM id: /subscriptions/<id>/resourceGroups/<group>"
                "/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>",
            )
        subnet_id = subnet_id.strip()
    return AzureOptions(
        vm_size=vm_size.strip() if isinstance(vm_size, str) else None,
        subnet_id=subnet_id,
        arch=arch,
    )


# ----------------------------------------------------------------------- names


def replica_name(workload: str, replica: int) -> str:
    """The deterministic VM name of replica ``replica``: ``<workload>-<replica>``."""
    return f"{workload}-{replica}"


def nic_name(vm: str) -> str:
    """The VM's network interface: ``<vm>-nic``."""
    return f"{vm}-nic"


def ip_name(vm: str) -> str:
    """The VM's public IP: ``<vm>-ip``."""
    return f"{vm}-ip"


def os_disk_name(vm: str) -> str:
    """The VM's OS disk as created: ``<vm>-osdisk``."""
    return f"{vm}-osdisk"


def nsg_name(workload: str) -> str:
    """The workload's network security group: ``vmkit-<workload>-nsg``."""
    return f"vmkit-{workload}-nsg"


def safe_name(text: str, limit: int = 80) -> str:
    """``text`` as a Compute resource name (letters, digits, ``_.-``), at most ``limit``."""
    return _NAME_UNSAFE.sub("-", text)[:limit].rstrip(".-") or "vmkit"


def user_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """The user's labels: the tags without vmkit's own."""
    return {k: v for k, v in tags.items() if not k.startswith("vmkit-")}


def disk_size_gb(size: int) -> int | None:
    """Bytes -> whole GiB for ``diskSizeGB``; None (the image's own size) below 30 GiB."""
    gib = max(1, math.ceil(size / 2**30))
    return gib if gib > IMAGE_DISK_GB else None


# -------------------------------------------------------------------- network


def security_rules(ports: Sequence[Port], *, ssh: bool) -> list[dict[str, Any]]:
    """Inbound allow rules for exactly the declared ports (22/tcp only with ``ssh``),
    from anywhere, with explicit priorities from 1000 up in (port, protocol) order.
    Everything else stays closed by the NSG's DenyAllInBound default rule."""
    opened = {(p.port, p.protocol) for p in ports}
    if ssh:
        opened.add((22, "tcp"))
    rules = []
    for index, (port, protocol) in enumerate(sorted(opened)):
        rules.append(
            {
                "name": f"vmkit-{protocol}-{port}",
                "properties": {
                    "protocol": protocol.capitalize(),
                    "sourcePortRange": "*",
                    "destinationPortRange": str(port),
                    "sourceAddressPrefix": "*",
                    "destinationAddressPrefix": "*",
                    "access": "Allow",
                    "priority": FIRST_PRIORITY + index,
                    "direction": "Inbound",
                },
            }
        )
    return rules


def nsg_body(workload: Workload, location: str) -> dict[str, Any]:
    """The workload's NSG with its whole rule set: a PUT replaces rules that drifted."""
    return {
        "location": location,
        "tags": {WORKLOAD_TAG: workload.name},
        "properties": {
            "securityRules": security_rules(workload.ports, ssh=workload.ssh_public_key is not None)
        },
    }


def vnet_body(location: str) -> dict[str, Any]:
    """vmkit's virtual network with its one subnet, tagged as vmkit-made."""
    return {
        "location": location,
        "tags": {MANAGED_TAG: "true"},
        "properties": {
            "addressSpace": {"addressPrefixes": [VNET_PREFIX]},
            "subnets": [{"name": SUBNET_NAME, "properties": {"addressPrefix": SUBNET_PREFIX}}],
        },
    }


def public_ip_body(workload: Workload, replica: int, location: str) -> dict[str, Any]:
    """A Standard, static IPv4 address (Standard requires Static allocation)."""
    return {
        "location": location,
        "tags": ownership_labels(workload, replica),
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
    }


def nic_body(
    workload: Workload,
    replica: int,
    location: str,
    *,
    subnet_id: str,
    nsg_id: str,
    public_ip_id: str | None,
) -> dict[str, Any]:
    """The replica's NIC in ``subnet_id`` behind the workload's NSG. The public IP's
    deleteOption is set here, on the ipConfiguration, the only place Azure honours it
    (Azure/azure-rest-api-specs#25475)."""
    ip_config: dict[str, Any] = {
        "subnet": {"id": subnet_id},
        "privateIPAllocationMethod": "Dynamic",
        "primary": True,
    }
    if public_ip_id is not None:
        ip_config["publicIPAddress"] = {
            "id": public_ip_id,
            "properties": {"deleteOption": "Delete"},
        }
    return {
        "location": location,
        "tags": ownership_labels(workload, replica),
        "properties": {
            "networkSecurityGroup": {"id": nsg_id},
            "ipConfigurations": [{"name": "ipconfig1", "properties": ip_config}],
        },
    }


# ------------------------------------------------------------------ machines


def image_reference(urn_or_id: str) -> dict[str, str]:
    """``publisher:offer:sku[:version]`` or an image's ARM id -> ``imageReference``.

    Raises SpecError naming ``os_image`` for anything else.
    """
    value = urn_or_id.strip()
    if value.startswith("/"):
        return {"id": value}
    parts = value.split(":")
    if len(parts) in (3, 4) and all(parts):
        publisher, offer, sku = parts[:3]
        version = parts[3] if len(parts) == 4 else "latest"
        return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}
    raise SpecError(
        "os_image",
        f"{urn_or_id!r} is neither a portable image nor an Azure URN "
        "(publisher:offer:sku[:version]) or image id",
    )


def vm_body(
    workload: Workload,
    replica: int,
    location: str,
    *,
    vm_size: str,
    image: Mapping[str, str],
    custom_data: str | None,
    ssh_public_key: str,
    nic_id: str,
) -> dict[str, Any]:
    """The exact VirtualMachine PUT body of one replica booted from an image.

    Linux with SSH key authentication only (``disablePasswordAuthentication``, no
    ``adminPassword``); ``customData`` is the cloud-init text in base64, as the API
    requires; OS disk and NIC are deleted with the VM; managed boot diagnostics (no
    storage account) keep the serial log; Spot VMs are deleted on eviction.
    """
    name = replica_name(workload.name, replica)
    os_disk: dict[str, Any] = {
        "name": os_disk_name(name),
        "createOption": "FromImage",
        "caching": "ReadWrite",
        "managedDisk": {"storageAccountType": OS_DISK_SKU},
        "deleteOption": "Delete",
    }
    size_gb = disk_size_gb(workload.resources.disk)
    if size_gb is not None:
        os_disk["diskSizeGB"] = size_gb
    os_profile: dict[str, Any] = {
        "computerName": name,
        "adminUsername": ADMIN_USER,
        "linuxConfiguration": {
            "disablePasswordAuthentication": True,
            "ssh": {
                "publicKeys": [
                    {
                        "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                        "keyData": ssh_public_key,
                    }
                ]
            },
            "provisionVMAgent": True,
        },
    }
    if custom_data is not None:
        os_profile["customData"] = base64.b64encode(custom_data.encode()).decode()
    properties = vm_properties(workload, vm_size=vm_size, nic_id=nic_id)
    properties["storageProfile"] = {"imageReference": dict(image), "osDisk": os_disk}
    properties["osProfile"] = os_profile
    return {
        "location": location,
        "tags": ownership_labels(workload, replica),
        "properties": properties,
    }


def vm_properties(workload: Workload, *, vm_size: str, nic_id: str) -> dict[str, Any]:
    """What every replica's VM has whatever it boots: its size, its NIC (deleted with the
    VM), managed boot diagnostics, and for ``spot`` the Spot settings. The storage and OS
    profiles are the caller's."""
    properties: dict[str, Any] = {
        "hardwareProfile": {"vmSize": vm_size},
        "networkProfile": {
            "networkInterfaces": [
                {"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}}
            ]
        },
        # Managed boot diagnostics: enabled without a storageUri
        # (https://learn.microsoft.com/azure/virtual-machines/boot-diagnostics).
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
    }
    if workload.spot:
        # https://learn.microsoft.com/azure/virtual-machines/spot-vms: maxPrice -1 pays up
        # to the on-demand price and is never evicted for price.
        properties["priority"] = "Spot"
        properties["evictionPolicy"] = "Delete"
        properties["billingProfile"] = {"maxPrice": -1}
    return properties


# -------------------------------------------------------------------- reading

# https://learn.microsoft.com/azure/virtual-machines/states-billing
POWER_STATES: Mapping[str, MachineState] = {
    "running": MachineState.RUNNING,
    "starting": MachineState.PENDING,
    "stopping": MachineState.STOPPING,
    "deallocating": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "deallocated": MachineState.STOPPED,
}


def _statuses(instance_view: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list((instance_view or {}).get("statuses") or [])


def machine_state(vm: Mapping[str, Any], instance_view: Mapping[str, Any] | None) -> MachineState:
    """Provisioning Failed -> FAILED and Deleting -> DELETING first, then the power state;
    a VM with no power state yet is PENDING while it is being created."""
    provisioning = str((vm.get("properties") or {}).get("provisioningState") or "")
    codes = [str(s.get("code") or "") for s in _statuses(instance_view)]
    if provisioning.lower() == "failed" or any(
        c.lower().startswith("provisioningstate/failed") for c in codes
    ):
        return MachineState.FAILED
    if provisioning.lower() == "deleting":
        return MachineState.DELETING
    for code in codes:
        if code.lower().startswith("powerstate/"):
            return POWER_STATES.get(code.split("/", 1)[1].lower(), MachineState.UNKNOWN)
    if provisioning.lower() in ("creating", "updating", ""):
        return MachineState.PENDING
    return MachineState.UNKNOWN


def failure_reason(instance_view: Mapping[str, Any] | None) -> str | None:
    """The message of the instance view's error status, e.g. an allocation failure."""
    for status in _statuses(instance_view):
        if str(status.get("level") or "").lower() == "error":
            return str(status.get("message") or status.get("displayStatus") or status["code"])
    return None


def failure_code(instance_view: Mapping[str, Any] | None) -> str | None:
    """The code of the instance view's error status (``ProvisioningState/failed/
    AllocationFailed`` gives ``AllocationFailed``)."""
    for status in _statuses(instance_view):
        if str(status.get("level") or "").lower() == "error":
            return str(status.get("code") or "").rsplit("/", 1)[-1] or None
    return None


def parse_replica(value: str | None) -> int | None:
    """The replica index of a tag value, None when absent or malformed."""
    if value is None or not value.isdigit():
        return None
    return int(value)


def parse_timestamp(value: Any) -> datetime | None:
    """An ARM timestamp (ISO 8601, or what the SDK already parsed) as a datetime."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _image_name(vm: Mapping[str, Any]) -> str | None:
    image = ((vm.get("properties") or {}).get("storageProfile") or {}).get("imageReference")
    if not image:
        source = (vm.get("tags") or {}).get(IMAGE_TAG)
        return str(source) if source else None
    if image.get("publisher"):
        keys = ("publisher", "offer", "sku", "version")
        return ":".join(str(image.get(k) or "latest") for k in keys)
    return str(image.get("id")) if image.get("id") else None


def machine_id(vm: Mapping[str, Any]) -> str:
    """The id vmkit gives a VM: its ``vmId``, lower case.

    Azure gives every VM a new vmId when it is created, so a VM deleted then created
    again under the same name is another machine, and a Machine from before never
    reaches the new VM. A VM record without a vmId (none seen from ARM) gets its ARM id,
    which ``get`` also accepts.
    """
    vm_id = (vm.get("properties") or {}).get("vmId")
    return str(vm_id).lower() if vm_id else str(vm.get("id") or vm.get("name") or "")


def to_machine(
    vm: Mapping[str, Any],
    instance_view: Mapping[str, Any] | None,
    *,
    private_ip: str | None = None,
    public_ip: str | None = None,
) -> Machine:
    """A VirtualMachine (REST JSON) and its instance view -> Machine, its id
    :func:`machine_id`.

    ``raw`` keeps the VM, with the instance view under ``properties.instanceView``.
    """
    tags = {str(k): str(v) for k, v in (vm.get("tags") or {}).items()}
    props = vm.get("properties") or {}
    raw = dict(vm)
    if instance_view is not None:
        raw["properties"] = {**props, "instanceView": dict(instance_view)}
    return Machine(
        id=machine_id(vm),
        name=str(vm.get("name") or str(vm.get("id") or "").rsplit("/", 1)[-1]),
        provider="azure",
        kind="vm",
        workload=tags.get(WORKLOAD_TAG, ""),
        replica=parse_replica(tags.get(REPLICA_TAG)),
        state=machine_state(vm, instance_view),
        size=(props.get("hardwareProfile") or {}).get("vmSize"),
        image=_image_name(vm),
        location=vm.get("location"),
        private_ip=private_ip,
        public_ip=public_ip,
        labels=user_labels(tags),
        created_at=parse_timestamp(props.get("timeCreated")),
        spec_hash=tags.get(SPEC_TAG),
        raw=raw,
    )
