"""The Azure fake, driven only through the real azure-mgmt clients."""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.resource.resources import ResourceManagementClient

from vmkit.testing.fakes.azure import AzureClients, AzureFake, StaticTokenCredential, make_clients

VM = "Microsoft.Compute/virtualMachines"
DISK = "Microsoft.Compute/disks"
NIC = "Microsoft.Network/networkInterfaces"
PIP = "Microsoft.Network/publicIPAddresses"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests vmkit@test"
IMAGE = {
    "publisher": "Canonical",
    "offer": "0001-com-ubuntu-server-jammy",
    "sku": "22_04-lts-gen2",
    "version": "latest",
}


@pytest.fixture(scope="module")
def server() -> Iterator[AzureFake]:
    with AzureFake(lro_delay=0.02) as running:
        yield running


@pytest.fixture
def fake(server: AzureFake) -> Iterator[AzureFake]:
    """The shared server, with this test's faults and counters only; tests stay apart by
    using a subscription of their own."""
    server.requests.clear()
    yield server
    server.faults.clear()
    server.page_size, server.lro_delay, server.token, server.lro_retry_after = 100, 0.02, None, None
    server.set_cores_quota(None)
    server.release_provisioning()
    server.locks.clear()


@pytest.fixture
def sub() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def az(fake: AzureFake, sub: str) -> AzureClients:
    return make_clients(fake, sub, retry_backoff_factor=0)


def code_of(exc: pytest.ExceptionInfo[HttpResponseError]) -> str | None:
    return exc.value.error.code if exc.value.error is not None else None


# ------------------------------------------------------------------ builders


def rule(name: str, priority: int, port: str) -> dict[str, Any]:
    """An inbound TCP allow rule."""
    props = {"protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": priority}
    props |= {"sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*"}
    return {"name": name, "properties": {**props, "destinationPortRange": port}}


def network(az: AzureClients, rg: str, *, nsg_on_subnet: bool = False) -> dict[str, str]:
    """RG + NSG (ssh rule) + VNet/subnet; returns their ids."""
    az.resources.resource_groups.create_or_update(rg, {"location": "eastus"})
    nsg = az.network.network_security_groups.begin_create_or_update(
        rg, "nsg", {"location": "eastus", "properties": {"securityRules": [rule("ssh", 100, "22")]}}
    ).result()
    subnet: dict[str, Any] = {"name": "default", "properties": {"addressPrefix": "10.0.1.0/24"}}
    if nsg_on_subnet:
        subnet["properties"]["networkSecurityGroup"] = {"id": nsg.id}
    space = {"addressPrefixes": ["10.0.0.0/16"]}
    vnet = az.network.virtual_networks.begin_create_or_update(
        rg,
        "vnet",
        {"location": "eastus", "properties": {"addressSpace": space, "subnets": [subnet]}},
    ).result()
    return {"nsg": nsg.id, "vnet": vnet.id, "subnet": vnet.properties.subnets[0].id}


def public_ip(az: AzureClients, rg: str, name: str) -> str:
    body = {"location": "eastus", "sku": {"name": "Standard"}}
    body["properties"] = {"publicIPAllocationMethod": "Static"}
    return str(az.network.public_ip_addresses.begin_create_or_update(rg, name, body).result().id)


def nic(
    az: AzureClients,
    rg: str,
    name: str,
    net: dict[str, str],
    *,
    pip: str | None = None,
    pip_delete: str | None = None,
) -> str:
    config: dict[str, Any] = {"subnet": {"id": net["subnet"]}}
    if pip is not None:
        config["publicIPAddress"] = {"id": pip}
        if pip_delete is not None:
            config["publicIPAddress"]["properties"] = {"deleteOption": pip_delete}
    props = {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}
    props["networkSecurityGroup"] = {"id": net["nsg"]}
    body = {"location": "eastus", "properties": props}
    return str(az.network.network_interfaces.begin_create_or_update(rg, name, body).result().id)


def vm_body(nic_id: str, *, deletes: str = "Delete", **overrides: Any) -> dict[str, Any]:
    os_profile: dict[str, Any] = {
        "computerName": "web-0",
        "adminUsername": "azureuser",
        "customData": base64.b64encode(b"#cloud-config\nruncmd: [echo hi]\n").decode(),
        "linuxConfiguration": {
            "disablePasswordAuthentication": True,
            "ssh": {
                "publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": KEY}]
            },
        },
    }
    os_profile.update(overrides.pop("os", {}))
    props: dict[str, Any] = {
        "hardwareProfile": {"vmSize": overrides.pop("size", "Standard_B2s")},
        "storageProfile": {
            "imageReference": IMAGE,
            "osDisk": {"createOption": "FromImage", "deleteOption": deletes, "diskSizeGB": 40},
        },
        "osProfile": os_profile,
        "networkProfile": {
            "networkInterfaces": [{"id": nic_id, "properties": {"deleteOption": deletes}}]
        },
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
        "priority": "Spot",
        "evictionPolicy": "Deallocate",
    }
    props.update(overrides)
    return {"location": "eastus", "tags": {"vmkit-workload": "web"}, "properties": props}


def new_vm(az: AzureClients, rg: str, name: str, **kwargs: Any) -> Any:
    net = network(az, rg)
    nic_id = nic(az, rg, f"{name}-nic", net)
    return az.compute.virtual_machines.begin_create_or_update(
        rg, name, vm_body(nic_id, **kwargs)
    ).result()


def power(az: AzureClients, rg: str, name: str) -> list[str]:
    return [s.code for s in az.compute.virtual_machines.instance_view(rg, name).statuses]


# ----------------------------------------------------------- resource groups


def test_resource_group_create_check_get_and_delete_cascade(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    groups = az.resources.resource_groups
    created = groups.create_or_update("rg-a", {"location": "East US", "tags": {"team": "infra"}})
    assert (created.name, created.location, created.tags) == ("rg-a", "eastus", {"team": "infra"})
    assert groups.check_existence("RG-A") is True
    assert groups.check_existence("rg-missing") is False
    assert groups.get("rg-a").properties.provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError) as exc:
        groups.create_or_update("rg-a", {"location": "westeurope"})
    assert code_of(exc) == "InvalidResourceGroupLocation"

    net = network(az, "rg-a")
    nic(az, "rg-a", "nic-a", net)
    groups.begin_delete("rg-a").result()
    assert groups.check_existence("rg-a") is False
    assert fake.resource_count(NIC, sub) == 0
    with pytest.raises(ResourceNotFoundError) as missing:
        groups.get("rg-a")
    assert code_of(missing) == "ResourceGroupNotFound"


def test_missing_group_and_missing_resource_are_distinct_404s(az: AzureClients) -> None:
    with pytest.raises(ResourceNotFoundError) as no_group:
        az.compute.virtual_machines.get("rg-nowhere", "vm")
    assert code_of(no_group) == "ResourceGroupNotFound"
    az.resources.resource_groups.create_or_update("rg-b", {"location": "eastus"})
    with pytest.raises(ResourceNotFoundError) as no_vm:
        az.compute.virtual_machines.get("rg-b", "vm")
    assert code_of(no_vm) == "ResourceNotFound"
    assert "Microsoft.Compute/virtualMachines/vm" in str(no_vm.value.error.message)
    assert no_vm.value.response is not None
    assert no_vm.value.response.headers["x-ms-request-id"]


# ------------------------------------------------------------------ network


def test_nsg_rules_defaults_child_rules_and_conflicts(az: AzureClients) -> None:
    net = network(az, "rg-n")
    nsgs, rules = az.network.network_security_groups, az.network.security_rules
    got = nsgs.get("rg-n", "nsg")
    assert [r.name for r in got.properties.security_rules] == ["ssh"]
    assert {r.name for r in got.properties.default_security_rules} >= {
        "DenyAllInBound",
        "AllowVnetInBound",
    }
    http = {"properties": rule("http", 110, "80")["properties"]}
    rules.begin_create_or_update("rg-n", "nsg", "http", http).result()
    assert sorted(r.name for r in rules.list("rg-n", "nsg")) == ["http", "ssh"]
    clash = {"properties": {**http["properties"], "destinationPortRange": "443"}}
    with pytest.raises(HttpResponseError) as conflict:
        rules.begin_create_or_update("rg-n", "nsg", "https", clash).result()
    assert code_of(conflict) == "SecurityRuleConflict"
    rules.begin_delete("rg-n", "nsg", "http").result()
    assert [r.name for r in nsgs.get("rg-n", "nsg").properties.security_rules] == ["ssh"]
    assert net["nsg"].endswith("/networkSecurityGroups/nsg")


def test_subnet_addresses_and_public_ip_rules(fake: AzureFake, az: AzureClients, sub: str) -> None:
    net = network(az, "rg-p")
    subnet = az.network.subnets.get("rg-p", "vnet", "default")
    assert subnet.properties.address_prefix == "10.0.1.0/24"
    pip = public_ip(az, "rg-p", "pip")
    nic(az, "rg-p", "nic-1", net, pip=pip)
    nic(az, "rg-p", "nic-2", net)
    configs = [
        az.network.network_interfaces.get("rg-p", n).properties.ip_configurations[0]
        for n in ("nic-1", "nic-2")
    ]
    # Azure reserves .0-.3 of every subnet.
    assert [c.properties.private_ip_address for c in configs] == ["10.0.1.4", "10.0.1.5"]
    got = az.network.public_ip_addresses.get("rg-p", "pip")
    assert got.sku.name == "Standard"
    assert got.properties.ip_address
    assert got.properties.ip_configuration.id.endswith(
        "/networkInterfaces/nic-1/ipConfigurations/ipconfig1"
    )
    users = az.network.subnets.get("rg-p", "vnet", "default").properties.ip_configurations
    assert [u.id for u in users] == [c.id for c in configs]
    with pytest.raises(HttpResponseError) as dynamic:
        az.network.public_ip_addresses.begin_create_or_update(
            "rg-p", "pip-dyn", {"location": "eastus", "sku": {"name": "Standard"}}
        ).result()
    assert code_of(dynamic) == "StandardSkuPublicIPAddressesMustBeStatic"
    assert fake.resource_count(PIP, sub) == 1


def test_nic_with_missing_subnet_is_an_invalid_reference(az: AzureClients) -> None:
    net = network(az, "rg-r")
    with pytest.raises(HttpResponseError) as exc:
        nic(az, "rg-r", "nic", {**net, "subnet": net["vnet"] + "/subnets/nope"})
    assert exc.value.status_code == 400
    assert code_of(exc) == "InvalidResourceReference"


def test_names_are_case_insensitive_and_put_is_idempotent(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    net = network(az, "rg-c")
    again = az.network.network_security_groups.begin_create_or_update(
        "RG-C", "NSG", {"location": "eastus", "tags": {"v": "2"}}
    ).result()
    assert again.id == net["nsg"]
    assert again.tags == {"v": "2"}
    assert fake.resource_count("Microsoft.Network/networkSecurityGroups", sub) == 1
    assert az.network.network_security_groups.get("Rg-C", "nSg").id == net["nsg"]


# ---------------------------------------------------------------------- VMs


def test_vm_create_shape_and_write_only_fields(fake: AzureFake, az: AzureClients) -> None:
    vm = new_vm(az, "rg-v", "web-0")
    props = vm.properties
    assert props.provisioning_state == "Succeeded"
    assert props.hardware_profile.vm_size == "Standard_B2s"
    assert props.os_profile.custom_data is None
    assert props.os_profile.linux_configuration.ssh.public_keys[0].key_data == KEY
    assert props.storage_profile.os_disk.delete_option == "Delete"
    assert props.storage_profile.os_disk.disk_size_gb == 40
    assert props.network_profile.network_interfaces[0].properties.delete_option == "Delete"
    assert (props.priority, props.eviction_policy) == ("Spot", "Deallocate")
    assert props.vm_id
    assert props.time_created
    assert vm.tags == {"vmkit-workload": "web"}
    assert fake.custom_data(vm.id) == b"#cloud-config\nruncmd: [echo hi]\n"
    disk = az.compute.disks.get("rg-v", props.storage_profile.os_disk.name)
    assert disk.managed_by == vm.id
    assert disk.properties.disk_size_gb == 40
    got = az.compute.virtual_machines.get("rg-v", "WEB-0", expand="instanceView")
    assert [s.code for s in got.properties.instance_view.statuses] == [
        "ProvisioningState/succeeded",
        "PowerState/running",
    ]
    attached = az.network.network_interfaces.get("rg-v", "web-0-nic")
    assert attached.properties.virtual_machine.id == vm.id


def test_retry_after_on_operations_paces_the_sdk_poller(fake: AzureFake, az: AzureClients) -> None:
    # azure-core sleeps Retry-After between polls (a 0 counts as absent: polling_interval).
    az.resources.resource_groups.create_or_update("rg-ra", {"location": "eastus"})
    fake.lro_retry_after, fake.lro_delay = 1, 0.2
    started = time.monotonic()
    az.network.network_security_groups.begin_create_or_update(
        "rg-ra", "nsg", {"location": "eastus"}
    ).result()
    assert time.monotonic() - started >= 1.0
    assert fake.requests["GET operation"] == 2


def test_vm_provisioning_is_visible_while_in_progress(fake: AzureFake, az: AzureClients) -> None:
    net = network(az, "rg-s")
    nic_id = nic(az, "rg-s", "nic", net)
    fake.lro_delay = 0.4
    poller = az.compute.virtual_machines.begin_create_or_update("rg-s", "vm", vm_body(nic_id))
    early = az.compute.virtual_machines.get("rg-s", "vm", expand="instanceView")
    assert early.properties.provisioning_state == "Creating"
    assert "PowerState/starting" in [s.code for s in early.properties.instance_view.statuses]
    assert poller.result().properties.provisioning_state == "Succeeded"


def test_power_actions_move_the_instance_view(az: AzureClients) -> None:
    new_vm(az, "rg-w", "vm")
    vms = az.compute.virtual_machines
    vms.begin_power_off("rg-w", "vm").result()
    assert "PowerState/stopped" in power(az, "rg-w", "vm")
    vms.begin_start("rg-w", "vm").result()
    assert "PowerState/running" in power(az, "rg-w", "vm")
    vms.begin_restart("rg-w", "vm").result()
    assert "PowerState/running" in power(az, "rg-w", "vm")
    vms.begin_deallocate("rg-w", "vm").result()
    assert "PowerState/deallocated" in power(az, "rg-w", "vm")
    with pytest.raises(HttpResponseError) as exc:
        vms.begin_restart("rg-w", "vm").result()
    assert exc.value.status_code == 409
    assert code_of(exc) == "OperationNotAllowed"


def test_vm_delete_follows_delete_options(fake: AzureFake, az: AzureClients, sub: str) -> None:
    net = network(az, "rg-d")
    doomed = nic(
        az, "rg-d", "nic-del", net, pip=public_ip(az, "rg-d", "pip-del"), pip_delete="Delete"
    )
    kept = nic(az, "rg-d", "nic-keep", net, pip=public_ip(az, "rg-d", "pip-keep"))
    vms = az.compute.virtual_machines
    vms.begin_create_or_update("rg-d", "a", vm_body(doomed, deletes="Delete")).result()
    keep_vm = vms.begin_create_or_update("rg-d", "b", vm_body(kept, deletes="Detach")).result()
    assert fake.resource_count(DISK, sub) == 2
    vms.begin_delete("rg-d", "a").result()
    vms.begin_delete("rg-d", "b").result()
    assert [n["name"] for n in fake.resources(NIC, sub)] == ["nic-keep"]
    assert [p["name"] for p in fake.resources(PIP, sub)] == ["pip-keep"]
    detached = az.network.network_interfaces.get("rg-d", "nic-keep")
    assert detached.properties.virtual_machine is None
    disk = az.compute.disks.get("rg-d", keep_vm.properties.storage_profile.os_disk.name)
    assert disk.managed_by is None
    assert disk.properties.disk_state == "Unattached"
    assert fake.resource_count(DISK, sub) == 1
    assert fake.resource_count(VM, sub) == 0
    # Deleting what is already gone is not an error in ARM.
    vms.begin_delete("rg-d", "a").result()


def test_in_use_rules_for_nic_public_ip_nsg_and_subnet(az: AzureClients) -> None:
    net = network(az, "rg-u", nsg_on_subnet=True)
    pip = public_ip(az, "rg-u", "pip")
    nic_id = nic(az, "rg-u", "nic", net, pip=pip)
    az.compute.virtual_machines.begin_create_or_update(
        "rg-u", "vm", vm_body(nic_id, deletes="Detach")
    ).result()
    net_api = az.network
    checks = [
        (net_api.network_interfaces.begin_delete, ("rg-u", "nic"), "NicInUse"),
        (
            net_api.public_ip_addresses.begin_delete,
            ("rg-u", "pip"),
            "PublicIPAddressCannotBeDeleted",
        ),
        (
            net_api.network_security_groups.begin_delete,
            ("rg-u", "nsg"),
            "InUseNetworkSecurityGroupCannotBeDeleted",
        ),
        (net_api.subnets.begin_delete, ("rg-u", "vnet", "default"), "InUseSubnetCannotBeDeleted"),
        (net_api.virtual_networks.begin_delete, ("rg-u", "vnet"), "InUseSubnetCannotBeDeleted"),
    ]
    for begin_delete, args, code in checks:
        with pytest.raises(HttpResponseError) as exc:
            begin_delete(*args).result()
        assert (exc.value.status_code, code_of(exc)) == (400, code)
    with pytest.raises(HttpResponseError) as reused:
        az.compute.virtual_machines.begin_create_or_update("rg-u", "vm2", vm_body(nic_id)).result()
    assert code_of(reused) == "NicInUse"
    # Tear down in dependency order: each step unblocks the next.
    az.compute.virtual_machines.begin_delete("rg-u", "vm").result()
    az.network.network_interfaces.begin_delete("rg-u", "nic").result()
    az.network.public_ip_addresses.begin_delete("rg-u", "pip").result()
    with pytest.raises(HttpResponseError) as subnet_nsg:
        az.network.network_security_groups.begin_delete("rg-u", "nsg").result()
    assert code_of(subnet_nsg) == "InUseNetworkSecurityGroupCannotBeDeleted"
    az.network.virtual_networks.begin_delete("rg-u", "vnet").result()
    az.network.network_security_groups.begin_delete("rg-u", "nsg").result()


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"size": "Standard_Z99s_v9"}, 409, "SkuNotAvailable"),
        ({"size": "huge"}, 400, "InvalidParameter"),
        ({"os": {"customData": "#!/bin/sh not base64"}}, 400, "InvalidParameter"),
    ],
)
def test_vm_validation(
    fake: AzureFake, az: AzureClients, overrides: dict[str, Any], status: int, code: str, sub: str
) -> None:
    net = network(az, "rg-x")
    with pytest.raises(HttpResponseError) as exc:
        az.compute.virtual_machines.begin_create_or_update(
            "rg-x", "vm", vm_body(nic(az, "rg-x", "nic", net), **overrides)
        )
    assert (exc.value.status_code, code_of(exc)) == (status, code)
    assert fake.resource_count(VM, sub) == 0


def test_password_auth_without_password_names_the_field(az: AzureClients) -> None:
    net = network(az, "rg-pw")
    body = vm_body(
        nic(az, "rg-pw", "nic", net),
        os={"linuxConfiguration": {"disablePasswordAuthentication": False}},
    )
    with pytest.raises(HttpResponseError) as exc:
        az.compute.virtual_machines.begin_create_or_update("rg-pw", "vm", body)
    assert exc.value.error is not None
    assert exc.value.error.target == "adminPassword"


def test_vm_needs_an_existing_nic(az: AzureClients) -> None:
    net = network(az, "rg-m")
    missing = net["vnet"].replace("virtualNetworks/vnet", "networkInterfaces/ghost")
    with pytest.raises(HttpResponseError) as exc:
        az.compute.virtual_machines.begin_create_or_update("rg-m", "vm", vm_body(missing))
    assert (exc.value.status_code, code_of(exc)) == (404, "NotFound")


def test_immutable_vm_properties(az: AzureClients) -> None:
    vm = new_vm(az, "rg-i", "vm")
    nic_id = vm.properties.network_profile.network_interfaces[0].id
    with pytest.raises(HttpResponseError) as exc:
        az.compute.virtual_machines.begin_create_or_update(
            "rg-i", "vm", vm_body(nic_id, os={"adminUsername": "root"})
        )
    assert code_of(exc) == "PropertyChangeNotAllowed"


# --------------------------------------------------------- disks, snapshots


def test_snapshot_from_disk_and_restore_by_os_disk_swap(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    vm = new_vm(az, "rg-snap", "vm")
    disk_id = vm.properties.storage_profile.os_disk.managed_disk.id
    copy = {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}}
    body = {"location": "eastus", "tags": {"vmkit-workload": "web"}, "properties": copy}
    snap = az.compute.snapshots.begin_create_or_update("rg-snap", "before-upgrade", body).result()
    assert snap.properties.creation_data.source_resource_id == disk_id
    assert snap.properties.disk_size_gb == 40
    assert [s.name for s in az.compute.snapshots.list_by_resource_group("rg-snap")] == [
        "before-upgrade"
    ]
    az.compute.snapshots.begin_update(
        "rg-snap", "before-upgrade", {"tags": {"keep": "yes"}}
    ).result()
    assert az.compute.snapshots.get("rg-snap", "before-upgrade").tags == {"keep": "yes"}

    with pytest.raises(HttpResponseError) as attached:
        az.compute.disks.begin_delete(
            "rg-snap", vm.properties.storage_profile.os_disk.name
        ).result()
    assert code_of(attached) == "OperationNotAllowed"

    copy = {"creationData": {"createOption": "Copy", "sourceResourceId": snap.id}}
    body = {"location": "eastus", "properties": copy}
    restored = az.compute.disks.begin_create_or_update("rg-snap", "vm-restored", body).result()
    swap = vm_body(vm.properties.network_profile.network_interfaces[0].id)
    swap["properties"]["storageProfile"]["osDisk"]["managedDisk"] = {"id": restored.id}
    with pytest.raises(HttpResponseError) as running:
        az.compute.virtual_machines.begin_create_or_update("rg-snap", "vm", swap).result()
    assert code_of(running) == "OperationNotAllowed"
    az.compute.virtual_machines.begin_deallocate("rg-snap", "vm").result()
    swapped = az.compute.virtual_machines.begin_create_or_update("rg-snap", "vm", swap).result()
    assert swapped.properties.storage_profile.os_disk.managed_disk.id == restored.id
    assert az.compute.disks.get("rg-snap", "vm-restored").managed_by == vm.id
    az.compute.disks.begin_delete("rg-snap", vm.properties.storage_profile.os_disk.name).result()
    az.compute.snapshots.begin_delete("rg-snap", "before-upgrade").result()
    assert fake.resource_count("Microsoft.Compute/snapshots", sub) == 0
    assert fake.resource_count(DISK, sub) == 1


def snapshot_of_new_vm(az: AzureClients, rg: str) -> tuple[Any, Any]:
    """A VM and a snapshot of its OS disk."""
    vm = new_vm(az, rg, "vm")
    disk_id = vm.properties.storage_profile.os_disk.managed_disk.id
    copy = {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}}
    body = {"location": "eastus", "properties": copy}
    return vm, az.compute.snapshots.begin_create_or_update(rg, "snap", body).result()


def disk_from(az: AzureClients, rg: str, name: str, snap_id: str) -> Any:
    copy = {"creationData": {"createOption": "Copy", "sourceResourceId": snap_id}}
    body = {"location": "eastus", "properties": copy}
    return az.compute.disks.begin_create_or_update(rg, name, body).result()


def attach_body(nic_id: str, disk_id: str, **overrides: Any) -> dict[str, Any]:
    """A VM that boots an existing disk: no image, no osProfile."""
    body = vm_body(nic_id, deletes="Delete")
    props = body["properties"]
    del props["osProfile"]
    props["storageProfile"] = {
        "osDisk": {
            "createOption": "Attach",
            "osType": "Linux",
            "managedDisk": {"id": disk_id},
            "deleteOption": "Delete",
        }
    }
    props["userData"] = base64.b64encode(b"#cloud-config\nruncmd: [echo clone]\n").decode()
    props.update(overrides)
    return body


def test_a_disk_copied_from_a_snapshot_takes_its_size_and_keeps_its_source(
    az: AzureClients,
) -> None:
    _, snap = snapshot_of_new_vm(az, "rg-copy")
    disk = disk_from(az, "rg-copy", "copy", snap.id)
    assert disk.properties.disk_size_gb == snap.properties.disk_size_gb == 40
    assert disk.properties.creation_data.source_resource_id == snap.id
    assert disk.properties.disk_state == "Unattached"
    other = az.compute.snapshots.begin_create_or_update(
        "rg-copy",
        "other",
        {
            "location": "eastus",
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk.id}},
        },
    ).result()
    moved = {
        "location": "eastus",
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": other.id}},
    }
    with pytest.raises(HttpResponseError) as exc:
        az.compute.disks.begin_create_or_update("rg-copy", "copy", moved).result()
    assert (exc.value.status_code, code_of(exc)) == (409, "PropertyChangeNotAllowed")


def test_a_vm_made_from_an_attached_disk(fake: AzureFake, az: AzureClients, sub: str) -> None:
    vm, snap = snapshot_of_new_vm(az, "rg-att")
    nic_id = nic(az, "rg-att", "nic2", network(az, "rg-att"))
    disk = disk_from(az, "rg-att", "clone-disk", snap.id)
    vms = az.compute.virtual_machines
    refused = [
        (
            attach_body(nic_id, disk.id, osProfile=vm_body(nic_id)["properties"]["osProfile"]),
            "osProfile",
        ),
        (
            attach_body(
                nic_id,
                disk.id,
                storageProfile={
                    "imageReference": IMAGE,
                    "osDisk": attach_body(nic_id, disk.id)["properties"]["storageProfile"][
                        "osDisk"
                    ],
                },
            ),
            "osDisk",
        ),
        (
            attach_body(
                nic_id,
                disk.id,
                storageProfile={
                    "osDisk": {"createOption": "Attach", "managedDisk": {"id": disk.id}}
                },
            ),
            "osDisk.osType",
        ),
    ]
    for body, target in refused:
        with pytest.raises(HttpResponseError) as exc:
            vms.begin_create_or_update("rg-att", "clone", body).result()
        assert (exc.value.status_code, code_of(exc)) == (400, "InvalidParameter"), target
        assert exc.value.error is not None
        assert exc.value.error.target == target
    # The first VM's own disk is attached to it: no second VM may boot it.
    in_use = vm.properties.storage_profile.os_disk.managed_disk.id
    with pytest.raises(HttpResponseError) as taken:
        vms.begin_create_or_update("rg-att", "clone", attach_body(nic_id, in_use)).result()
    assert (taken.value.status_code, code_of(taken)) == (409, "OperationNotAllowed")
    assert fake.resource_count(VM, sub) == 1

    clone = vms.begin_create_or_update("rg-att", "clone", attach_body(nic_id, disk.id)).result()
    assert clone.properties.os_profile is None
    assert clone.properties.storage_profile.image_reference is None
    assert clone.properties.storage_profile.os_disk.create_option == "Attach"
    assert az.compute.disks.get("rg-att", "clone-disk").managed_by == clone.id
    assert "PowerState/running" in power(az, "rg-att", "clone")
    assert fake.user_data("clone") == b"#cloud-config\nruncmd: [echo clone]\n"
    assert vms.get("rg-att", "clone").properties.user_data is None
    shown = vms.get("rg-att", "clone", expand="userData").properties.user_data
    assert base64.b64decode(shown) == fake.user_data("clone")
    # Deleted with the VM (deleteOption Delete), like an OS disk made from an image.
    vms.begin_delete("rg-att", "clone").result()
    assert [d["name"] for d in fake.resources(DISK, sub)] == [
        vm.properties.storage_profile.os_disk.name
    ]


def test_an_os_disk_swap_by_patch_and_its_rules(fake: AzureFake, az: AzureClients) -> None:
    vm, snap = snapshot_of_new_vm(az, "rg-sw")
    old_id = vm.properties.storage_profile.os_disk.managed_disk.id
    new = disk_from(az, "rg-sw", "restored", snap.id)
    vms = az.compute.virtual_machines

    def swap(**os_disk: Any) -> Any:
        patch = {"managedDisk": {"id": new.id}, "name": "restored", **os_disk}
        body = {"properties": {"storageProfile": {"osDisk": patch}}}
        return vms.begin_update("rg-sw", "vm", body).result()

    # Running, then powered off but still allocated: both refused.
    for stop in (None, vms.begin_power_off):
        if stop is not None:
            stop("rg-sw", "vm").result()
        with pytest.raises(HttpResponseError) as exc:
            swap()
        assert (exc.value.status_code, code_of(exc)) == (409, "OperationNotAllowed")
    vms.begin_deallocate("rg-sw", "vm").result()
    with pytest.raises(HttpResponseError) as option:
        swap(createOption="Attach")
    assert code_of(option) == "PropertyChangeNotAllowed"
    with pytest.raises(HttpResponseError) as name:
        swap(name="some-other-name")
    assert code_of(name) == "PropertyChangeNotAllowed"
    swapped = swap(createOption="FromImage", deleteOption="Delete")
    assert swapped.properties.storage_profile.os_disk.managed_disk.id == new.id
    assert swapped.tags == {"vmkit-workload": "web"}  # a PATCH leaves what it does not name
    assert az.compute.disks.get("rg-sw", "restored").managed_by == vm.id
    old = az.compute.disks.get("rg-sw", vm.properties.storage_profile.os_disk.name)
    assert (old.managed_by, old.properties.disk_state) == (None, "Unattached")
    az.compute.disks.begin_delete("rg-sw", old.name).result()
    assert [d["id"] for d in fake.resources(DISK) if d["id"] == old_id] == []


def test_boot_diagnostics_serial_log_is_served_by_sas_url(
    fake: AzureFake, az: AzureClients
) -> None:
    vm = new_vm(az, "rg-log", "vm")
    fake.console_write(vm.id, "vmkit: container web started")
    data = az.compute.virtual_machines.retrieve_boot_diagnostics_data(
        "rg-log", "vm", sas_uri_expiration_time_in_minutes=5
    )
    log = urllib.request.urlopen(data.serial_console_log_blob_uri, timeout=5).read().decode()
    assert "web-0 login:" in log
    assert log.rstrip().endswith("vmkit: container web started")
    assert data.console_screenshot_blob_uri.startswith(fake.url)
    forged = data.serial_console_log_blob_uri.replace("sig=", "sig=x")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(forged, timeout=5)
    assert denied.value.code == 403


# --------------------------------------------------------- failure simulation


def test_fail_vm_create_ends_the_lro_failed_and_leaves_a_failed_vm(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    fake.fail_vm_create(
        "quota-*", code="QuotaExceeded", message="Cores quota exceeded in eastus.", count=1
    )
    net = network(az, "rg-f")
    nic_id = nic(az, "rg-f", "nic", net)
    with pytest.raises(HttpResponseError) as exc:
        az.compute.virtual_machines.begin_create_or_update(
            "rg-f", "quota-1", vm_body(nic_id)
        ).result()
    assert code_of(exc) == "QuotaExceeded"
    assert exc.value.error is not None
    assert exc.value.error.message == "Cores quota exceeded in eastus."
    failed = az.compute.virtual_machines.get("rg-f", "quota-1", expand="instanceView")
    assert failed.properties.provisioning_state == "Failed"
    statuses = failed.properties.instance_view.statuses
    assert statuses[0].code == "ProvisioningState/failed/QuotaExceeded"
    # Cleanup works the real way: the VM first, then what it held.
    az.compute.virtual_machines.begin_delete("rg-f", "quota-1").result()
    az.network.network_interfaces.begin_delete("rg-f", "nic").result()
    assert [fake.resource_count(t, sub) for t in (VM, NIC, DISK)] == [0, 0, 0]


# -------------------------------------------------------------- protocol


def test_missing_api_version_is_rejected(az: AzureClients, sub: str) -> None:
    response = az.resources.send_request(HttpRequest("GET", f"/subscriptions/{sub}/resourcegroups"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_request_without_authorization_gets_401(fake: AzureFake, sub: str) -> None:
    anonymous = ResourceManagementClient(
        StaticTokenCredential(), sub, base_url=fake.url, authentication_policy=SansIOHTTPPolicy()
    )
    with pytest.raises(ClientAuthenticationError) as exc:
        anonymous.resource_groups.get("rg")
    assert exc.value.status_code == 401
    assert code_of(exc) == "AuthenticationFailed"
    assert exc.value.response is not None
    assert exc.value.response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_only_the_configured_token_is_accepted(fake: AzureFake, sub: str) -> None:
    fake.token = "s3cret"
    good = make_clients(fake, sub)
    assert good.resources.resource_groups.check_existence("rg") is False
    bad = make_clients(fake, sub, credential=StaticTokenCredential("wrong"))
    with pytest.raises(ClientAuthenticationError) as exc:
        bad.resources.resource_groups.get("rg")
    assert code_of(exc) == "InvalidAuthenticationToken"


def test_vm_list_pages_through_next_link(fake: AzureFake, az: AzureClients) -> None:
    fake.page_size = 2
    net = network(az, "rg-l")
    for i in range(5):
        nic_id = nic(az, "rg-l", f"nic-{i}", net)
        az.compute.virtual_machines.begin_create_or_update(
            "rg-l", f"vm-{i}", vm_body(nic_id)
        ).result()
    names = [v.name for v in az.compute.virtual_machines.list("rg-l")]
    assert names == [f"vm-{i}" for i in range(5)]
    assert fake.count("virtualMachines.list") == 3
    assert len(list(az.network.network_interfaces.list("rg-l"))) == 5


# ------------------------------------------------------------ fault injection


def test_throttling_burst_is_retried_by_the_sdk(fake: AzureFake, az: AzureClients) -> None:
    az.resources.resource_groups.create_or_update("rg-t", {"location": "eastus"})
    fake.faults.fail(429, count=3, retry_after=0, method="GET", path="/resourcegroups/rg-t$")
    assert az.resources.resource_groups.get("rg-t").name == "rg-t"
    assert fake.requests["GET fault"] == 3
    assert fake.requests["GET resourceGroups"] == 1


def test_throttling_beyond_the_retry_budget_raises(fake: AzureFake, az: AzureClients) -> None:
    az.resources.resource_groups.create_or_update("rg-t2", {"location": "eastus"})
    fake.faults.fail(429, count=4, retry_after=0, method="GET", path="/resourcegroups/rg-t2$")
    with pytest.raises(HttpResponseError) as exc:
        az.resources.resource_groups.get("rg-t2")
    assert exc.value.status_code == 429
    assert code_of(exc) == "SubscriptionRequestsThrottled"


def test_server_errors_are_retried(fake: AzureFake, az: AzureClients) -> None:
    az.resources.resource_groups.create_or_update("rg-5", {"location": "eastus"})
    fake.faults.fail(503, count=2, method="GET", path="/resourcegroups/rg-5$")
    assert az.resources.resource_groups.get("rg-5").name == "rg-5"
    assert fake.requests["GET fault"] == 2


def test_latency_is_injected(fake: AzureFake, az: AzureClients) -> None:
    az.resources.resource_groups.create_or_update("rg-slow", {"location": "eastus"})
    fake.faults.delay(0.3, count=1, method="GET", path="/resourcegroups/rg-slow$")
    started = time.monotonic()
    az.resources.resource_groups.get("rg-slow")
    assert time.monotonic() - started >= 0.3


def test_dropped_response_after_commit_is_retried_idempotently(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    net = network(az, "rg-drop")
    body = vm_body(nic(az, "rg-drop", "nic", net))
    fake.faults.drop_responses(count=1, method="PUT", path="/virtualMachines/vm$")
    vm = az.compute.virtual_machines.begin_create_or_update("rg-drop", "vm", body).result()
    assert vm.properties.provisioning_state == "Succeeded"
    assert fake.requests["PUT virtualMachines"] == 2
    assert fake.resource_count(VM, sub) == 1
    assert fake.resource_count(DISK, sub) == 1


def test_dropped_response_without_retries_leaves_the_vm_created(fake: AzureFake, sub: str) -> None:
    az = make_clients(fake, sub, retry_total=0)
    net = network(az, "rg-drop2")
    body = vm_body(nic(az, "rg-drop2", "nic", net))
    fake.faults.drop_responses(count=1, method="PUT", path="/virtualMachines/vm$")
    with pytest.raises(AzureError):
        az.compute.virtual_machines.begin_create_or_update("rg-drop2", "vm", body)
    (created,) = fake.resources(VM, sub)
    again = az.compute.virtual_machines.begin_create_or_update("rg-drop2", "vm", body).result()
    assert again.properties.vm_id == created["properties"]["vmId"]
    assert fake.resource_count(VM, sub) == 1


# ------------------------------------------------- reliability knobs of the fake


def test_if_none_match_star_creates_but_never_updates_a_vm(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    net = network(az, "rg-inm")
    body = vm_body(nic(az, "rg-inm", "nic", net))
    vms = az.compute.virtual_machines
    made = vms.begin_create_or_update(
        "rg-inm", "vm", body, match_condition=MatchConditions.IfMissing
    ).result()
    other = {**body, "tags": {"vmkit-workload": "other"}}
    with pytest.raises(ResourceExistsError) as exc:
        vms.begin_create_or_update("rg-inm", "vm", other, match_condition=MatchConditions.IfMissing)
    assert exc.value.status_code == 412
    assert code_of(exc) == "PreconditionFailed"
    (vm,) = fake.resources(VM, sub)
    assert vm["tags"] == {"vmkit-workload": "web"}
    assert vm["properties"]["vmId"] == made.properties.vm_id


def test_the_regional_vcpu_quota_refuses_a_vm_put_at_once(
    fake: AzureFake, az: AzureClients, sub: str
) -> None:
    net = network(az, "rg-q")
    vms = az.compute.virtual_machines
    fake.set_cores_quota(3, "East US")
    vms.begin_create_or_update("rg-q", "vm-0", vm_body(nic(az, "rg-q", "n0", net))).result()
    with pytest.raises(HttpResponseError) as exc:
        vms.begin_create_or_update("rg-q", "vm-1", vm_body(nic(az, "rg-q", "n1", net)))
    assert exc.value.status_code == 409
    assert code_of(exc) == "OperationNotAllowed"
    message = str(exc.value.error.message if exc.value.error else "")
    assert "exceeding approved Total Regional Cores quota" in message
    assert "Current Limit: 3, Current Usage: 2, Additional Required: 2" in message
    # Refused before anything was made: no VM, no OS disk, the NIC still free.
    assert [v["name"] for v in fake.resources(VM, sub)] == ["vm-0"]
    assert fake.resource_count(DISK, sub) == 1
    assert "virtualMachine" not in az.network.network_interfaces.get("rg-q", "n1").properties
    # A deallocated VM holds no cores; starting it again needs them.
    vms.begin_deallocate("rg-q", "vm-0").result()
    vms.begin_create_or_update("rg-q", "vm-1", vm_body(nic(az, "rg-q", "n1", net))).result()
    with pytest.raises(HttpResponseError) as start:
        vms.begin_start("rg-q", "vm-0")
    assert code_of(start) == "OperationNotAllowed"
    fake.set_cores_quota(None, "eastus")
    vms.begin_start("rg-q", "vm-0").result()
    assert "PowerState/running" in power(az, "rg-q", "vm-0")


def test_a_network_put_while_the_last_one_runs_is_answered_429(fake: AzureFake, sub: str) -> None:
    az = make_clients(fake, sub, retry_total=0)
    net = network(az, "rg-busy")
    fake.lro_delay = 0.5
    pips = az.network.public_ip_addresses
    body = {"location": "eastus", "sku": {"name": "Standard"}}
    body["properties"] = {"publicIPAllocationMethod": "Static"}
    pips.begin_create_or_update("rg-busy", "ip", body)
    with pytest.raises(HttpResponseError) as again:
        pips.begin_create_or_update("rg-busy", "ip", body)
    assert again.value.status_code == 429
    assert code_of(again) == "AnotherOperationInProgress"
    assert "/providers/Microsoft.Network/locations/eastus/operations/" in str(again.value)
    with pytest.raises(HttpResponseError) as delete:
        pips.begin_delete("rg-busy", "ip")
    assert code_of(delete) == "AnotherOperationInProgress"
    # A NIC cannot join an NSG that is being updated either.
    nsg = {"location": "eastus", "properties": {"securityRules": [rule("http", 110, "80")]}}
    az.network.network_security_groups.begin_create_or_update("rg-busy", "nsg", nsg)
    with pytest.raises(HttpResponseError) as joined:
        nic(az, "rg-busy", "nic", net)
    assert code_of(joined) == "AnotherOperationInProgress"
    time.sleep(0.6)
    assert pips.begin_create_or_update("rg-busy", "ip", body).result().name == "ip"
    assert nic(az, "rg-busy", "nic", net).endswith("/nic")


def test_a_held_vm_stays_creating_until_released(fake: AzureFake, az: AzureClients) -> None:
    net = network(az, "rg-hold")
    fake.hold_provisioning()
    poller = az.compute.virtual_machines.begin_create_or_update(
        "rg-hold", "vm", vm_body(nic(az, "rg-hold", "nic", net))
    )
    time.sleep(0.1)
    assert not poller.done()
    view = az.compute.virtual_machines.get("rg-hold", "vm", expand="instanceView")
    assert view.properties.provisioning_state == "Creating"
    assert "PowerState/starting" in power(az, "rg-hold", "vm")
    fake.release_provisioning()
    assert poller.result().properties.provisioning_state == "Succeeded"
    assert "PowerState/running" in power(az, "rg-hold", "vm")


def lock_path(resource_id: str, name: str = "keep") -> str:
    return f"{resource_id}/providers/Microsoft.Authorization/locks/{name}?api-version=2016-09-01"


def test_a_can_not_delete_lock_refuses_deletes_below_its_scope(
    fake: AzureFake, az: AzureClients
) -> None:
    vm = new_vm(az, "rg-lock", "vm")
    body = {"properties": {"level": "CanNotDelete", "notes": "prod"}}
    put = az.resources.send_request(HttpRequest("PUT", lock_path(vm.id), json=body))
    assert put.status_code == 201
    assert put.json()["properties"]["level"] == "CanNotDelete"
    with pytest.raises(HttpResponseError) as exc:
        az.compute.virtual_machines.begin_delete("rg-lock", "vm")
    assert exc.value.status_code == 409
    assert code_of(exc) == "ScopeLocked"
    assert f"following scope(s) are locked: '{vm.id}'" in str(exc.value)
    # CanNotDelete still lets the VM be changed and stopped.
    az.compute.virtual_machines.begin_deallocate("rg-lock", "vm").result()
    listed = az.resources.send_request(
        HttpRequest(
            "GET", f"{vm.id}/providers/Microsoft.Authorization/locks?api-version=2016-09-01"
        )
    )
    assert [lock["name"] for lock in listed.json()["value"]] == ["keep"]
    assert az.resources.send_request(HttpRequest("DELETE", lock_path(vm.id))).status_code == 200
    az.compute.virtual_machines.begin_delete("rg-lock", "vm").result()


def test_a_read_only_lock_on_the_group_refuses_writes(fake: AzureFake, az: AzureClients) -> None:
    net = network(az, "rg-ro")
    group = net["nsg"].split("/providers/")[0]
    fake.add_lock(group, "frozen", "ReadOnly")
    with pytest.raises(HttpResponseError) as exc:
        nic(az, "rg-ro", "nic", net)
    assert code_of(exc) == "ScopeLocked"
    assert "cannot perform write operation" in str(exc.value)
    with pytest.raises(HttpResponseError):
        az.resources.resource_groups.begin_delete("rg-ro")
    fake.remove_lock(group, "frozen")
    assert nic(az, "rg-ro", "nic", net).endswith("/nic")
