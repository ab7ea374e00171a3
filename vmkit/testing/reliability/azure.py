"""The reliability checks' harness for Azure: the Azure fake, its knobs, its census.

Every knob is an Azure behaviour the fake plays (see
:class:`~vmkit.testing.fakes.azure.AzureFake`): the regional vCPU quota for
``limit``, provisioning that takes long for ``hold``, a CanNotDelete management lock
for ``protect``. The census reads the fake's state, never vmkit.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import vmkit
from vmkit.catalog import resolve_instance_type
from vmkit.plan import REPLICA_TAG, SPEC_TAG, WORKLOAD_TAG
from vmkit.provider import Provider
from vmkit.spec import Resources
from vmkit.testing.fakes.azure import AzureFake, make_clients
from vmkit.testing.fakes.azure.sim import SIM_SUBSCRIPTION, simulated_azure
from vmkit.testing.faults import FaultPlan
from vmkit.testing.reliability import Census, Harness

__all__ = ["AzureHarness"]

VM = "Microsoft.Compute/virtualMachines"
NIC = "Microsoft.Network/networkInterfaces"
PIP = "Microsoft.Network/publicIPAddresses"
DISK = "Microsoft.Compute/disks"
NSG = "Microsoft.Network/networkSecurityGroups"
VNET = "Microsoft.Network/virtualNetworks"
GROUP = "vmkit-reliability"
LOCATION = "eastus"
LOCK = "vmkit-reliability"

Json = dict[str, Any]


class AzureHarness(Harness):
    """The Azure fake on 127.0.0.1, reached as a private ARM endpoint."""

    name = "azure"
    create_method = "PUT"
    # The PUTs that make a replica: its public IP, its NIC, its VM.
    create_path = (
        r"(?i)/providers/Microsoft\.(?:Network/(?:publicIPAddresses|networkInterfaces)"
        r"|Compute/virtualMachines)/[^/]+$"
    )
    throttle_status = 429

    def __init__(self) -> None:
        self._fake: AzureFake | None = None
        self._config: dict[str, Any] = {}

    @property
    def fake(self) -> AzureFake:
        if self._fake is None:
            raise RuntimeError("the harness is not started")
        return self._fake

    @contextmanager
    def start(self, faults: FaultPlan) -> Iterator[None]:
        fake = AzureFake(faults=faults, lro_delay=0.02, token="reliability-token")
        with fake, simulated_azure(LOCATION, fake=fake, resource_group=GROUP) as config:
            self._fake, self._config = fake, config
            try:
                yield
            finally:
                self._fake, self._config = None, {}

    def connect(self, **options: Any) -> Provider:
        # Ten tries over up to a minute ride out a 10 s storm of 429s with full jitter.
        settings = {**self._config, "retry_attempts": 10, "retry_timeout": 60.0, **options}
        return vmkit.connect("azure", **settings)

    # ----------------------------------------------------------------- census

    def census(self, workload: str) -> Census:
        fake = self.fake
        with fake.lock:
            vms = [v for v in fake.resources(VM) if _owner(v) == workload]
            nics = [n for n in fake.resources(NIC) if _owner(n) == workload]
            pips = [p for p in fake.resources(PIP) if _owner(p) == workload]
            nsgs = [
                g
                for g in fake.resources(NSG)
                if _owner(g) == workload or g["name"] == f"vmkit-{workload}-nsg"
            ]
            vm_ids = {v["id"].lower() for v in vms}
            os_disk = re.compile(rf"^{re.escape(workload)}-\d+-osdisk$", re.IGNORECASE)
            disks = [
                d
                for d in fake.resources(DISK)
                if _owner(d) == workload
                or str(d.get("managedBy") or "").lower() in vm_ids
                or os_disk.match(d["name"])
            ]
        loose = {
            n["id"].lower() for n in nics if not (n.get("properties") or {}).get("virtualMachine")
        }
        orphans = len(loose)
        for pip in pips:
            user = ((pip.get("properties") or {}).get("ipConfiguration") or {}).get("id")
            orphans += user is None or user.lower().split("/ipconfigurations/")[0] in loose
        orphans += sum(
            str((d.get("properties") or {}).get("diskState")).lower() == "unattached" for d in disks
        )
        orphans += 0 if vms else len(nsgs)
        resources = Counter(
            {
                "nic": len(nics),
                "public-ip": len(pips),
                "disk": len(disks),
                "security-group": len(nsgs),
            }
        )
        return Census(
            replicas=tuple(_replica(v) for v in vms),
            resources={kind: n for kind, n in sorted(resources.items()) if n},
            orphans=orphans,
        )

    # ------------------------------------------------------------------ knobs

    def limit(self, machines: int) -> None:
        """A regional vCPU quota with room for ``machines`` VMs of the checks' size."""
        fake = self.fake
        size = resolve_instance_type(
            "azure", Resources(), arch="x86_64", available=set(fake.vm_sizes)
        )
        fake.set_cores_quota(machines * fake.vm_sizes[size.name][0])

    def allow(self) -> None:
        self.fake.set_cores_quota(None)

    def hold(self) -> None:
        self.fake.hold_provisioning()

    def release(self) -> None:
        self.fake.release_provisioning()

    def protect(self, workload: str, replica: int) -> None:
        """A CanNotDelete management lock on the replica's VM."""
        self.fake.add_lock(self._vm_id(workload, replica), LOCK)

    def unprotect(self, workload: str, replica: int) -> None:
        self.fake.remove_lock(self._vm_id(workload, replica), LOCK)

    def _vm_id(self, workload: str, replica: int) -> str:
        name = f"{workload}-{replica}"
        for vm in self.fake.resources(VM):
            if vm["name"].lower() == name.lower():
                return str(vm["id"])
        raise KeyError(f"no VM named {name}")

    def leak(self, workload: str) -> int:
        """What a process killed mid-deploy (or mid-restore) leaves, made through the
        real SDK clients: the workload's NSG, a NIC with its public IP whose VM was never
        made, a public IP whose NIC was never made, and an unattached disk of an
        interrupted restore. vmkit's virtual network is made too when missing (shared by
        every workload, not counted)."""
        clients = make_clients(self.fake, SIM_SUBSCRIPTION)
        clients.resources.resource_groups.create_or_update(GROUP, {"location": LOCATION})
        # Plain REST JSON bodies: the SDK's models are mappings of it.
        network: Any = clients.network
        disks: Any = clients.compute.disks
        tags = {WORKLOAD_TAG: workload, SPEC_TAG: "0" * 16}
        nsg = network.network_security_groups.begin_create_or_update(
            GROUP, f"vmkit-{workload}-nsg", {"location": LOCATION, "tags": tags}
        ).result()
        subnet_id = self._subnet(network)
        ips = []
        for replica in (0, 1):
            ips.append(
                network.public_ip_addresses.begin_create_or_update(
                    GROUP,
                    f"{workload}-{replica}-ip",
                    {
                        "location": LOCATION,
                        "tags": {**tags, REPLICA_TAG: str(replica)},
                        "sku": {"name": "Standard"},
                        "properties": {"publicIPAllocationMethod": "Static"},
                    },
                ).result()
            )
        ip_config: Json = {"subnet": {"id": subnet_id}, "publicIPAddress": {"id": ips[0].id}}
        network.network_interfaces.begin_create_or_update(
            GROUP,
            f"{workload}-0-nic",
            {
                "location": LOCATION,
                "tags": {**tags, REPLICA_TAG: "0"},
                "properties": {
                    "networkSecurityGroup": {"id": nsg.id},
                    "ipConfigurations": [{"name": "ipconfig1", "properties": ip_config}],
                },
            },
        ).result()
        disk = disks.begin_create_or_update(
            GROUP,
            f"{workload}-2-osdisk-restore",
            {
                "location": LOCATION,
                "tags": {WORKLOAD_TAG: workload},
                "sku": {"name": "StandardSSD_LRS"},
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 30},
            },
        ).result()
        # Left by a restore interrupted an hour ago (gc spares a disk made a
        # moment ago: it may be a restore's, about to be swapped in).
        self.fake.backdate(disk.id, 3600)
        return 5

    def _subnet(self, network: Any) -> str:
        """vmkit's subnet, made as vmkit makes it when missing."""
        vnet = network.virtual_networks.begin_create_or_update(
            GROUP,
            "vmkit-vnet",
            {
                "location": LOCATION,
                "tags": {"vmkit-managed": "true"},
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                    "subnets": [
                        {"name": "vmkit-subnet", "properties": {"addressPrefix": "10.0.0.0/20"}}
                    ],
                },
            },
        ).result()
        return f"{vnet.id}/subnets/vmkit-subnet"


def _owner(resource: Json) -> str | None:
    owner = (resource.get("tags") or {}).get(WORKLOAD_TAG)
    return str(owner) if owner is not None else None


def _replica(vm: Json) -> int | None:
    value = str((vm.get("tags") or {}).get(REPLICA_TAG) or "")
    return int(value) if value.isdigit() else None
