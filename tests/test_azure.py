"""What is specific to the Azure backend, against the Azure fake over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

import vmkit
from vmkit.render import render_cloud_init
from vmkit.testing.fakes.azure import AzureFake, StaticTokenCredential, make_clients
from vmkit.testing.fakes.azure.sim import SIM_SUBSCRIPTION, simulated_azure

VM = "Microsoft.Compute/virtualMachines"
NIC = "Microsoft.Network/networkInterfaces"
PIP = "Microsoft.Network/publicIPAddresses"
DISK = "Microsoft.Compute/disks"
NSG = "Microsoft.Network/networkSecurityGroups"
VNET = "Microsoft.Network/virtualNetworks"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkGaDSBZfHXbYhkzTtPCkQ7XQ3yC1dRkx1xr8Ve3nYw me@host"


@pytest.fixture
def fake() -> Iterator[AzureFake]:
    with AzureFake(lro_delay=0.02, token="secret-arm-token") as server:
        yield server


@pytest.fixture
def config(fake: AzureFake) -> Iterator[dict[str, Any]]:
    with simulated_azure(fake=fake, resource_group="rg-test") as cfg:
        yield cfg


@pytest.fixture
def azure(config: dict[str, Any]) -> vmkit.Provider:
    return vmkit.connect("azure", **config)


def web(**overrides: Any) -> vmkit.Workload:
    fields: dict[str, Any] = {"name": "web", "image": "nginx:1.27", "ports": [80], "replicas": 2}
    fields.update(overrides)
    return vmkit.Workload(**fields)


def names(fake: AzureFake, kind: str) -> list[str]:
    return sorted(r["name"] for r in fake.resources(kind))


def vm_parameters(plan: vmkit.Plan, index: int = 0) -> dict[str, Any]:
    return dict(plan.requests[index].body["virtualMachine"]["parameters"])


# ------------------------------------------------------------------ requests


def test_linux_login_is_by_ssh_key_only(azure: vmkit.Provider) -> None:
    plan = azure.plan(web(ssh_public_key=KEY))
    os_profile = vm_parameters(plan)["properties"]["osProfile"]
    assert "adminPassword" not in os_profile
    linux = os_profile["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert [k["keyData"] for k in linux["ssh"]["publicKeys"]] == [KEY]


def test_without_a_key_the_vm_gets_a_key_nobody_holds(azure: vmkit.Provider) -> None:
    os_profile = vm_parameters(azure.plan(web()))["properties"]["osProfile"]
    assert "adminPassword" not in os_profile
    (key,) = os_profile["linuxConfiguration"]["ssh"]["publicKeys"]
    assert key["keyData"].startswith("ssh-rsa ")
    assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True


def test_plan_shows_one_create_per_replica_with_nic_and_ip(azure: vmkit.Provider) -> None:
    plan = azure.plan(web(replicas=3))
    assert [r.operation for r in plan.requests] == ["azure:CreateVM"] * 3
    assert [r.replicas for r in plan.requests] == [(0,), (1,), (2,)]
    body = plan.requests[1].body
    assert body["virtualMachine"]["name"] == "web-1"
    assert body["networkInterface"]["name"] == "web-1-nic"
    assert body["publicIPAddress"]["parameters"]["sku"]["name"] == "Standard"
    props = body["virtualMachine"]["parameters"]["properties"]
    assert props["storageProfile"]["osDisk"]["deleteOption"] == "Delete"
    assert props["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] == "Delete"
    assert props["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    config = body["networkInterface"]["parameters"]["properties"]["ipConfigurations"][0]
    assert config["properties"]["publicIPAddress"]["properties"]["deleteOption"] == "Delete"


def test_no_public_ip_without_ports_or_key(azure: vmkit.Provider, fake: AzureFake) -> None:
    plan = azure.plan(web(ports=[], replicas=1))
    assert "publicIPAddress" not in plan.requests[0].body
    (machine,) = azure.deploy(web(ports=[], replicas=1))
    assert machine.public_ip is None
    assert machine.private_ip is not None
    assert names(fake, PIP) == []


def test_custom_data_is_the_rendered_cloud_init(azure: vmkit.Provider, fake: AzureFake) -> None:
    workload = web(replicas=1, env={"MODE": "prod"})
    plan = azure.plan(workload)
    encoded = vm_parameters(plan)["properties"]["osProfile"]["customData"]
    expected = render_cloud_init(workload)
    assert expected is not None
    assert base64.b64decode(encoded).decode() == expected
    azure.apply(plan)
    assert fake.custom_data("web-0") == expected.encode()


def test_spot_replicas_are_spot_vms_deleted_on_eviction(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    (machine,) = azure.deploy(web(replicas=1, spot=True))
    (vm,) = fake.resources(VM)
    assert vm["properties"]["priority"] == "Spot"
    assert vm["properties"]["evictionPolicy"] == "Delete"
    assert machine.raw["properties"]["priority"] == "Spot"
    regular = vm_parameters(azure.plan(web(replicas=2)), 0)["properties"]
    assert "priority" not in regular


def test_vm_size_option_wins(azure: vmkit.Provider, fake: AzureFake) -> None:
    (machine,) = azure.deploy(web(replicas=1, options={"azure": {"vm_size": "Standard_D4s_v5"}}))
    assert machine.size == "Standard_D4s_v5"
    assert fake.resources(VM)[0]["properties"]["hardwareProfile"]["vmSize"] == "Standard_D4s_v5"


# ----------------------------------------------------------------- firewall


def rules(fake: AzureFake) -> list[tuple[str, str, int]]:
    (nsg,) = fake.resources(NSG)
    return sorted(
        (
            r["properties"]["destinationPortRange"],
            r["properties"]["protocol"],
            r["properties"]["priority"],
        )
        for r in nsg["properties"]["securityRules"]
    )


def test_nsg_opens_only_the_declared_ports(azure: vmkit.Provider, fake: AzureFake) -> None:
    workload = web(replicas=1, ports=[80, vmkit.Port(port=53, protocol="udp")])
    azure.deploy(workload)
    assert names(fake, NSG) == ["vmkit-web-nsg"]
    opened = rules(fake)
    assert [(port, proto) for port, proto, _ in opened] == [("53", "Udp"), ("80", "Tcp")]
    assert len({priority for *_, priority in opened}) == 2
    (nic,) = fake.resources(NIC)
    assert nic["properties"]["networkSecurityGroup"]["id"].endswith("/vmkit-web-nsg")


def test_ssh_opens_only_with_a_key(azure: vmkit.Provider, fake: AzureFake) -> None:
    azure.deploy(web(replicas=1))
    assert [port for port, *_ in rules(fake)] == ["80"]
    azure.deploy(web(replicas=1, ssh_public_key=KEY))
    assert sorted(port for port, *_ in rules(fake)) == ["22", "80"]


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize("code", ["QuotaExceeded", "AllocationFailed"])
def test_a_vm_that_fails_to_provision_leaves_nothing_behind(
    azure: vmkit.Provider, fake: AzureFake, code: str
) -> None:
    fake.fail_vm_create("web-1", code=code, message=f"Not now: {code} in eastus.", count=1)
    with pytest.raises(vmkit.QuotaExceeded) as info:
        azure.deploy(web(replicas=2))
    assert info.value.failed == {"web-1": f"Not now: {code} in eastus."}
    assert names(fake, VM) == ["web-0"]
    assert names(fake, NIC) == ["web-0-nic"]
    assert names(fake, PIP) == ["web-0-ip"]
    assert names(fake, DISK) == ["web-0-osdisk"]
    # The next deploy completes the fleet.
    assert [m.replica for m in azure.deploy(web(replicas=2))] == [0, 1]


def cores_of_one_vm(azure: vmkit.Provider, fake: AzureFake) -> int:
    size = vm_parameters(azure.plan(web(replicas=1)))["properties"]["hardwareProfile"]["vmSize"]
    return fake.vm_sizes[size][0]


def test_a_replica_refused_by_the_vcpu_quota_leaves_no_nic_or_ip(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    fake.set_cores_quota(2 * cores_of_one_vm(azure, fake))
    # The refused replica's NIC and IP are deleted even when some deletes fail at first.
    fake.faults.fail(503, count=2, method="DELETE", path="/networkInterfaces/")
    with pytest.raises(vmkit.QuotaExceeded) as info:
        azure.deploy(web(replicas=3))
    (refused,) = info.value.failed
    assert "exceeding approved Total Regional Cores quota" in info.value.failed[refused]
    assert refused in str(info.value)
    kept = sorted({"web-0", "web-1", "web-2"} - {refused})
    assert names(fake, VM) == kept
    assert names(fake, NIC) == [f"{n}-nic" for n in kept]
    assert names(fake, PIP) == [f"{n}-ip" for n in kept]
    assert fake.count("fault") == 2
    fake.set_cores_quota(None)
    assert [m.replica for m in azure.deploy(web(replicas=3))] == [0, 1, 2]


def test_an_atomic_deploy_refused_by_the_quota_leaves_nothing(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    fake.set_cores_quota(cores_of_one_vm(azure, fake))
    with pytest.raises(vmkit.QuotaExceeded):
        azure.deploy(web(replicas=2), atomic=True)
    for kind in (VM, NIC, PIP, DISK, NSG, VNET):
        assert names(fake, kind) == [], kind


def test_throttling_is_retried_by_vmkit_not_the_sdk(azure: vmkit.Provider, fake: AzureFake) -> None:
    azure.deploy(web(replicas=1))
    azure.api_calls.clear()
    fake.faults.fail(
        429,
        count=3,
        retry_after=0,
        method="GET",
        path=r"/resourceGroups/rg-test/providers/Microsoft\.Compute/virtualMachines$",
    )
    assert [m.name for m in azure.list("web")] == ["web-0"]
    assert azure.api_calls["compute:ListVMs"] == 4


def test_a_lost_vm_put_answer_creates_one_vm(azure: vmkit.Provider, fake: AzureFake) -> None:
    fake.faults.drop_responses(count=1, method="PUT", path="/virtualMachines/web-0$")
    (machine,) = azure.deploy(web(replicas=1))
    assert machine.name == "web-0"
    assert names(fake, VM) == ["web-0"]
    assert fake.requests["PUT virtualMachines"] == 2


def test_the_bearer_token_is_sent_and_checked(fake: AzureFake, config: dict[str, Any]) -> None:
    wrong = vmkit.connect("azure", **{**config, "credential": StaticTokenCredential("nope")})
    with pytest.raises(vmkit.AuthError):
        wrong.deploy(web(replicas=1))
    right = vmkit.connect("azure", **config)
    assert [m.name for m in right.deploy(web(replicas=1))] == ["web-0"]


# ---------------------------------------------------------------- lifecycle


def test_stop_deallocates(azure: vmkit.Provider, fake: AzureFake) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    stopped = machine.stop()
    assert stopped.state == vmkit.MachineState.STOPPED
    codes = [s["code"] for s in stopped.raw["properties"]["instanceView"]["statuses"]]
    assert "PowerState/deallocated" in codes
    assert fake.requests["POST virtualMachines.deallocate"] == 1
    assert fake.requests["POST virtualMachines.powerOff"] == 0


def test_delete_leaves_no_nic_ip_or_disk(azure: vmkit.Provider, fake: AzureFake) -> None:
    machines = azure.deploy(web(replicas=2))
    machines[1].delete()
    assert names(fake, VM) == ["web-0"]
    assert names(fake, NIC) == ["web-0-nic"]
    assert names(fake, PIP) == ["web-0-ip"]
    assert names(fake, DISK) == ["web-0-osdisk"]


def test_a_stale_machine_does_not_reach_a_new_vm_of_the_same_name(
    azure: vmkit.Provider,
) -> None:
    (old,) = azure.deploy(web(replicas=1))
    azure.destroy("web")
    (new,) = azure.deploy(web(replicas=1))
    assert new.name == old.name
    assert new.id != old.id
    with pytest.raises(vmkit.NotFound):
        azure.get(old.id)
    old.delete()
    assert [m.id for m in azure.list("web")] == [new.id]


def test_a_machine_id_is_the_vms_vm_id(azure: vmkit.Provider, fake: AzureFake) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    (vm,) = fake.resources(VM)
    assert machine.id == vm["properties"]["vmId"].lower()
    assert [m.id for m in azure.list("web")] == [machine.id]
    got = azure.get(machine.id.upper())
    assert (got.id, got.name, got.state) == (machine.id, "web-0", vmkit.MachineState.RUNNING)
    assert got.public_ip == machine.public_ip is not None
    assert machine.snapshot("before").machine_id == machine.id


@pytest.mark.parametrize(
    "machine_id",
    [
        "web-0",
        "not-a-guid",
        "0f47b100-583c-48e3-a4c0",
        f"/subscriptions/x/resourceGroups/rg-test/providers/{VM}/web-0#nope",
    ],
)
def test_an_id_of_no_known_form_is_not_found_without_a_call(
    azure: vmkit.Provider, machine_id: str
) -> None:
    azure.deploy(web(replicas=1))
    azure.api_calls.clear()
    with pytest.raises(vmkit.NotFound):
        azure.get(machine_id)
    assert sum(azure.api_calls.values()) == 0


def test_get_takes_a_vms_arm_id(azure: vmkit.Provider) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    arm = f"/subscriptions/{SIM_SUBSCRIPTION}/resourceGroups/rg-test/providers/{VM}/web-0"
    assert azure.get(arm).id == machine.id
    with pytest.raises(vmkit.NotFound):
        azure.get(arm.replace("rg-test", "rg-other"))


def test_destroy_removes_the_nsg_and_vmkits_network(azure: vmkit.Provider, fake: AzureFake) -> None:
    azure.deploy(web(replicas=2))
    assert names(fake, VNET) == ["vmkit-vnet"]
    azure.destroy("web")
    for kind in (VM, NIC, PIP, DISK, NSG, VNET):
        assert names(fake, kind) == [], kind


def test_destroy_keeps_the_users_subnet(azure: vmkit.Provider, fake: AzureFake) -> None:
    clients = make_clients(fake, SIM_SUBSCRIPTION)
    clients.resources.resource_groups.create_or_update("rg-test", {"location": "eastus"})
    vnet = clients.network.virtual_networks.begin_create_or_update(
        "rg-test",
        "user-net",
        {
            "location": "eastus",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.8.0.0/16"]},
                "subnets": [{"name": "apps", "properties": {"addressPrefix": "10.8.1.0/24"}}],
            },
        },
    ).result()
    subnet_id = f"{vnet.id}/subnets/apps"
    (machine,) = azure.deploy(web(replicas=1, options={"azure": {"subnet_id": subnet_id}}))
    assert machine.private_ip is not None
    assert machine.private_ip.startswith("10.8.1.")
    assert names(fake, VNET) == ["user-net"]
    azure.destroy("web")
    assert names(fake, VNET) == ["user-net"]
    assert names(fake, NSG) == []


def test_logs_are_the_serial_console(azure: vmkit.Provider, fake: AzureFake) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    fake.console_write("web-0", "hello from the serial console")
    assert "hello from the serial console" in machine.logs()


def test_connect_checks_its_options() -> None:
    with pytest.raises(vmkit.ConfigError):
        vmkit.connect("azure", subscription_id="s", location="eastus")
    with pytest.raises(vmkit.ConfigError):
        vmkit.connect(
            "azure", subscription_id="s", resource_group="rg", location="eastus", endpoint="ftp://x"
        )


def test_unknown_azure_option_is_a_spec_error(azure: vmkit.Provider) -> None:
    with pytest.raises(vmkit.SpecError) as info:
        azure.plan(web(options={"azure": {"size": "big"}}))
    assert info.value.field == "options.azure.size"


# ------------------------------------------------------- races and adoption


def ssh_keys(fake: AzureFake, name: str) -> list[str]:
    (vm,) = [v for v in fake.resources(VM) if v["name"] == name]
    keys = vm["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    return [k["keyData"] for k in keys]


def test_a_deploy_that_raced_another_adopts_its_vms_without_changing_them(
    azure: vmkit.Provider, config: dict[str, Any], fake: AzureFake
) -> None:
    other = vmkit.connect("azure", **config)
    mine, theirs = azure.plan(web()), other.plan(web())
    made = other.apply(theirs)
    keys = ssh_keys(fake, "web-0")
    adopted = azure.apply(mine)
    assert [m.id for m in adopted] == [m.id for m in made]
    assert names(fake, VM) == ["web-0", "web-1"]
    # Each deploy has its own throwaway key: the VM was never updated with the other's.
    linux = vm_parameters(mine)["properties"]["osProfile"]["linuxConfiguration"]
    assert linux["ssh"]["publicKeys"][0]["keyData"] not in keys
    assert ssh_keys(fake, "web-0") == keys


def test_a_vm_of_another_spec_under_the_name_is_left_alone(
    azure: vmkit.Provider, config: dict[str, Any], fake: AzureFake
) -> None:
    stale = azure.plan(web(replicas=1))
    (newer,) = vmkit.connect("azure", **config).deploy(web(replicas=1, env={"V": "2"}))
    with pytest.raises(vmkit.ProviderError) as info:
        azure.apply(stale)
    assert "web-0" in info.value.failed
    assert "another spec" in info.value.failed["web-0"]
    (vm,) = fake.resources(VM)
    assert vm["properties"]["vmId"].lower() == newer.id
    assert vm["properties"]["provisioningState"] == "Succeeded"
    assert names(fake, NIC) == ["web-0-nic"]
    assert names(fake, PIP) == ["web-0-ip"]


def test_a_vm_vmkit_did_not_make_is_never_adopted(azure: vmkit.Provider, fake: AzureFake) -> None:
    plan = azure.plan(web(replicas=1))
    body = vm_parameters(plan)
    clients = make_clients(fake, SIM_SUBSCRIPTION)
    azure.apply(plan)
    user_vm = {**body, "tags": {"owner": "someone"}}
    clients.compute.virtual_machines.begin_create_or_update("rg-test", "web-0", user_vm).result()
    assert azure.list("web") == []
    with pytest.raises(vmkit.ProviderError) as info:
        azure.deploy(web(replicas=1))
    assert "not made by vmkit" in info.value.failed["web-0"]
    (vm,) = fake.resources(VM)
    assert vm["tags"] == {"owner": "someone"}


# ------------------------------------------------------ timeouts and locks


def test_a_deploy_past_its_timeout_names_the_pending_replicas(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    fake.hold_provisioning()
    with pytest.raises(vmkit.DeployTimeout) as info:
        azure.deploy(web(), timeout=0.5)
    assert list(info.value.pending) == ["web-0", "web-1"]
    assert {m.state for m in azure.list("web")} == {vmkit.MachineState.PENDING}
    fake.release_provisioning()
    machines = azure.deploy(web())
    assert [m.state for m in machines] == [vmkit.MachineState.RUNNING] * 2
    assert names(fake, VM) == ["web-0", "web-1"]


def test_destroy_names_a_locked_vm_and_deletes_the_rest(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    azure.deploy(web())
    (locked,) = [v["id"] for v in fake.resources(VM) if v["name"] == "web-1"]
    fake.add_lock(locked, "keep")
    with pytest.raises(vmkit.ProviderError) as info:
        azure.destroy("web")
    assert "web-1" in str(info.value)
    assert "ScopeLocked" in str(info.value)
    assert names(fake, VM) == ["web-1"]
    fake.remove_lock(locked, "keep")
    azure.destroy("web")
    for kind in (VM, NIC, PIP, DISK, NSG, VNET):
        assert names(fake, kind) == [], kind


# ----------------------------------------------------------------------- gc


def leak(fake: AzureFake, workload: str, replica: int, *, nic: bool = True) -> None:
    """What a process killed between the IP, NIC and VM PUTs leaves."""
    clients = make_clients(fake, SIM_SUBSCRIPTION)
    tags = {"vmkit-workload": workload, "vmkit-replica": str(replica)}
    ip = clients.network.public_ip_addresses.begin_create_or_update(
        "rg-test",
        f"{workload}-{replica}-ip",
        {
            "location": "eastus",
            "tags": tags,
            "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"},
        },
    ).result()
    if not nic:
        return
    subnet = clients.network.subnets.get("rg-test", "vmkit-vnet", "vmkit-subnet")
    config = {"subnet": {"id": subnet.id}, "publicIPAddress": {"id": ip.id}}
    clients.network.network_interfaces.begin_create_or_update(
        "rg-test",
        f"{workload}-{replica}-nic",
        {
            "location": "eastus",
            "tags": tags,
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]},
        },
    ).result()


def unattached_disk(fake: AzureFake, name: str, tags: dict[str, str], age: float = 3600) -> None:
    disk = (
        make_clients(fake, SIM_SUBSCRIPTION)
        .compute.disks.begin_create_or_update(
            "rg-test",
            name,
            {
                "location": "eastus",
                "tags": tags,
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
            },
        )
        .result()
    )
    fake.backdate(disk.id, age)


def test_gc_finds_only_what_vmkit_made_and_no_vm_owns(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    (live,) = azure.deploy(web(replicas=1))
    live.snapshot("backup")
    azure.deploy(web(name="gone", replicas=1))
    (gone_vm,) = [v for v in fake.resources(VM) if v["name"] == "gone-0"]
    make_clients(fake, SIM_SUBSCRIPTION).compute.virtual_machines.begin_delete(
        "rg-test", "gone-0"
    ).result()
    assert gone_vm["id"]
    leak(fake, "web", 1)
    leak(fake, "web", 2, nic=False)
    unattached_disk(fake, "web-restore-disk", {"vmkit-workload": "web"})
    unattached_disk(fake, "users-disk", {"team": "data"})
    found = azure.gc(dry_run=True)
    assert sorted((o.kind, o.name, o.workload) for o in found) == [
        ("disk", "web-restore-disk", "web"),
        ("nic", "web-1-nic", "web"),
        ("public-ip", "web-1-ip", "web"),
        ("public-ip", "web-2-ip", "web"),
        ("security-group", "vmkit-gone-nsg", "gone"),
    ]
    assert names(fake, DISK) == ["users-disk", "web-0-osdisk", "web-restore-disk"]
    assert azure.gc(workload="gone") == [o for o in found if o.workload == "gone"]
    assert names(fake, NSG) == ["vmkit-web-nsg"]
    assert {o.name for o in azure.gc()} == {o.name for o in found if o.workload == "web"}
    assert azure.gc() == []
    assert names(fake, NIC) == ["web-0-nic"]
    assert names(fake, PIP) == ["web-0-ip"]
    assert names(fake, DISK) == ["users-disk", "web-0-osdisk"]
    assert [s.name for s in azure.snapshots("web")] == ["backup"]
    assert azure.get(live.id).state == vmkit.MachineState.RUNNING


def test_gc_spares_a_disk_made_a_moment_ago_as_a_restore_may_be_swapping_it_in(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    azure.deploy(web(replicas=1))
    unattached_disk(fake, "web-0-osdisk-restore", {"vmkit-workload": "web"}, age=5)
    assert azure.gc(dry_run=True) == []
    fake.backdate(next(d["id"] for d in fake.resources(DISK) if "restore" in d["name"]), 3600)
    assert [o.name for o in azure.gc(dry_run=True)] == ["web-0-osdisk-restore"]


def test_gc_spares_an_os_disk_a_restore_detached_a_moment_ago(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    # A restore swaps the OS disk out, then deletes it (or, failing, swaps it back).
    # One vmkit made (an earlier restore's, a clone's) carries the workload's tags;
    # made long ago, only the time it was detached tells gc it is a restore's, in
    # flight: Azure records it (LastOwnershipUpdateTime, "the time the disk was last
    # attached or detached from a VM", Disk of the Compute REST reference).
    (machine,) = azure.deploy(web(replicas=1))
    snap = machine.snapshot("before")
    machine.restore(snap)
    first = os_disk_id(fake, "web-0")
    fake.backdate(first, 3600)
    name = first.rsplit("/", 1)[-1]
    # The next restore is cut short after its swap: the old disk is left detached.
    fake.faults.fail(400, count=1, method="DELETE", path=rf"/disks/{name}$")
    with pytest.raises(vmkit.ProviderError, match="could not be deleted"):
        machine.restore(snap)
    assert os_disk_id(fake, "web-0").lower() != first.lower()
    assert name in names(fake, DISK)

    assert azure.gc(dry_run=True) == []
    fake.backdate(first, 3600)
    assert [(o.kind, o.name) for o in azure.gc(dry_run=True)] == [("disk", name)]


def test_gc_takes_vmkits_network_once_nothing_else_uses_it(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    azure.deploy(web(replicas=1))
    leak(fake, "crashed", 0)
    azure.destroy("web")
    assert names(fake, VNET) == ["vmkit-vnet"]  # the leaked NIC still sits in it
    found = azure.gc()
    assert sorted((o.kind, o.workload) for o in found) == [
        ("nic", "crashed"),
        ("public-ip", "crashed"),
        ("virtual-network", None),
    ]
    for kind in (NIC, PIP, VNET):
        assert names(fake, kind) == [], kind


def test_gc_without_a_resource_group_finds_nothing(azure: vmkit.Provider) -> None:
    assert azure.gc() == []


# ---------------------------------------------------------------- isolation


def test_a_vm_isolation_request_is_recorded_on_the_vm(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    azure.deploy(web(replicas=1, isolation="vm"))
    azure.deploy(web(name="plain", replicas=1))
    tags = {v["name"]: v["tags"] for v in fake.resources(VM)}
    assert tags["web-0"]["vmkit-isolation"] == "vm"
    assert "vmkit-isolation" not in tags["plain-0"]


# ------------------------------------------------------- snapshots, restore

SNAPSHOT = "Microsoft.Compute/snapshots"


def vm_named(fake: AzureFake, name: str) -> dict[str, Any]:
    (vm,) = [v for v in fake.resources(VM) if v["name"] == name]
    return vm


def os_disk_id(fake: AzureFake, vm: str) -> str:
    return str(vm_named(fake, vm)["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"])


def mutating(fake: AzureFake) -> dict[str, int]:
    return {
        k: n for k, n in fake.requests.items() if k.split()[0] in ("PUT", "PATCH", "POST", "DELETE")
    }


def test_a_snapshot_records_its_size_replica_and_tags(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    machines = azure.deploy(web(labels={"team": "infra"}))
    snap = machines[1].snapshot("before")
    assert (snap.replica, snap.size, snap.machine) == (1, 30, machines[1].id)
    assert snap.labels == {"team": "infra"}
    (stored,) = fake.resources(SNAPSHOT)
    assert stored["tags"]["vmkit-workload"] == "web"
    assert stored["tags"]["vmkit-replica"] == "1"
    (listed,) = azure.snapshots("web")
    assert (listed.id, listed.replica, listed.size, listed.name) == (snap.id, 1, 30, "before")


def test_restore_swaps_in_a_disk_made_from_the_snapshot(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    (machine,) = azure.deploy(web(replicas=1, labels={"team": "infra"}))
    before = vm_named(fake, "web-0")
    old_disk = os_disk_id(fake, "web-0")
    snap = machine.snapshot("before")
    # A change after the snapshot: the disk gets another storage type and a tag.
    make_clients(fake, SIM_SUBSCRIPTION).compute.disks.begin_create_or_update(
        "rg-test",
        "web-0-osdisk",
        {"location": "eastus", "tags": {"backup": "nightly"}, "sku": {"name": "Premium_LRS"}},
    ).result()
    fake.requests.clear()
    restored = machine.restore(snap)
    kept = ("id", "name", "replica", "workload", "labels", "private_ip", "public_ip")
    assert [getattr(restored, f) for f in kept] == [getattr(machine, f) for f in kept]
    assert restored.state == vmkit.MachineState.RUNNING
    after = vm_named(fake, "web-0")
    assert after["tags"] == before["tags"]
    assert after["properties"]["networkProfile"] == before["properties"]["networkProfile"]
    os_disk = after["properties"]["storageProfile"]["osDisk"]
    assert os_disk["managedDisk"]["id"].lower() != old_disk.lower()
    assert os_disk["deleteOption"] == "Delete"
    # The old disk was detached by the swap (the fake refuses to delete an attached one)
    # and deleted; the new one is a copy of the snapshot with the old one's settings.
    (disk,) = fake.resources(DISK)
    assert disk["id"].lower() == os_disk["managedDisk"]["id"].lower()
    assert disk["managedBy"] == after["id"]
    assert disk["properties"]["creationData"]["createOption"] == "Copy"
    assert disk["properties"]["creationData"]["sourceResourceId"].lower() == snap.id.lower()
    assert disk["sku"]["name"] == "Premium_LRS"
    assert disk["tags"] == {"backup": "nightly", "vmkit-workload": "web", "vmkit-replica": "0"}
    assert fake.requests["POST virtualMachines.deallocate"] == 1
    assert fake.requests["PATCH virtualMachines"] == 1
    assert fake.requests["PUT virtualMachines"] == 0
    assert fake.requests["DELETE disks"] == 1
    # The new disk goes with the VM.
    machine.delete()
    assert names(fake, DISK) == []
    assert [s.id for s in azure.snapshots("web")] == [snap.id]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", r"/virtualMachines/web-0$"), ("POST", r"/virtualMachines/web-0/start$")],
    ids=["the-swap-fails", "the-start-after-the-swap-fails"],
)
def test_a_restore_that_fails_part_way_leaves_the_machine_on_its_old_disk(
    azure: vmkit.Provider, fake: AzureFake, method: str, path: str
) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    old_disk = os_disk_id(fake, "web-0")
    snap = machine.snapshot("before")
    fake.faults.fail(400, count=1, method=method, path=path)
    with pytest.raises(vmkit.ProviderError):
        machine.restore(snap)
    assert os_disk_id(fake, "web-0") == old_disk
    (disk,) = fake.resources(DISK)
    assert (disk["id"], disk["managedBy"]) == (old_disk, vm_named(fake, "web-0")["id"])
    assert azure.get(machine.id).state == vmkit.MachineState.RUNNING
    # Nothing is left half done: the next restore goes through.
    assert machine.restore(snap).state == vmkit.MachineState.RUNNING
    assert os_disk_id(fake, "web-0") != old_disk
    assert len(fake.resources(DISK)) == 1


def test_restoring_a_deleted_snapshot_changes_nothing(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    snap = machine.snapshot("before")
    snap.delete()
    fake.requests.clear()
    with pytest.raises(vmkit.NotFound):
        machine.restore(snap)
    assert mutating(fake) == {}
    assert azure.get(machine.id).state == vmkit.MachineState.RUNNING


def test_snapshots_survive_destroy_and_gc_never_lists_them(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    snap = machine.snapshot("backup")
    azure.destroy("web")
    assert [s["id"] for s in fake.resources(SNAPSHOT)] == [snap.id]
    assert azure.gc(dry_run=True) == []
    assert azure.gc() == []
    assert [s.id for s in azure.snapshots("web")] == [snap.id]
    azure.destroy("web", snapshots=True)
    assert fake.resources(SNAPSHOT) == []


# -------------------------------------------------------------------- clone


def test_a_clone_boots_a_disk_copied_from_the_snapshot_per_replica(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    (original,) = azure.deploy(web(replicas=1))
    snap = original.snapshot("golden")
    clone = web(name="clone", os_image=snap.id, env={"MODE": "clone"})
    plan = azure.plan(clone)
    body = plan.requests[1].body
    assert body["osDisk"]["name"] == "clone-1-osdisk"
    copy = body["osDisk"]["parameters"]["properties"]["creationData"]
    assert copy == {"createOption": "Copy", "sourceResourceId": snap.id}
    props = body["virtualMachine"]["parameters"]["properties"]
    assert "osProfile" not in props
    assert "imageReference" not in props["storageProfile"]
    os_disk = props["storageProfile"]["osDisk"]
    assert (os_disk["createOption"], os_disk["osType"], os_disk["deleteOption"]) == (
        "Attach",
        "Linux",
        "Delete",
    )
    assert os_disk["managedDisk"]["id"].endswith(
        "/providers/Microsoft.Compute/disks/clone-1-osdisk"
    )
    expected = render_cloud_init(clone)
    assert expected is not None
    assert base64.b64decode(props["userData"]).decode() == expected

    clones = azure.apply(plan)
    assert [(m.name, m.state, m.image) for m in clones] == [
        ("clone-0", vmkit.MachineState.RUNNING, snap.id),
        ("clone-1", vmkit.MachineState.RUNNING, snap.id),
    ]
    assert fake.user_data("clone-0") == expected.encode()
    assert fake.custom_data("clone-0") is None
    for replica in (0, 1):
        vm = vm_named(fake, f"clone-{replica}")
        (disk,) = [d for d in fake.resources(DISK) if d["name"] == f"clone-{replica}-osdisk"]
        assert disk["managedBy"] == vm["id"]
        assert disk["properties"]["creationData"]["sourceResourceId"] == snap.id
        assert disk["tags"]["vmkit-replica"] == str(replica)
    # Idempotent per replica, like any workload.
    fake.requests.clear()
    assert [m.id for m in azure.deploy(clone)] == [m.id for m in clones]
    assert mutating(fake) == {"PUT networkSecurityGroups": 1}
    # Destroy takes the disks along; the snapshot stays.
    azure.destroy("clone")
    assert names(fake, DISK) == ["web-0-osdisk"]
    assert [s["id"] for s in fake.resources(SNAPSHOT)] == [snap.id]


def test_a_clone_of_a_snapshot_that_does_not_exist_fails_before_any_change(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    missing = (
        f"/subscriptions/{SIM_SUBSCRIPTION}/resourceGroups/rg-test/providers/"
        "Microsoft.Compute/snapshots/web-0-gone"
    )
    for call in (azure.plan, azure.deploy):
        with pytest.raises(vmkit.SpecError) as info:
            call(web(name="clone", os_image=missing))
        assert info.value.field == "os_image"
    assert mutating(fake) == {}
    assert fake.resource_groups() == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ssh_public_key": KEY}, "ssh_public_key"),
        (
            {
                "os_image": "/subscriptions/00000000-0000-0000-0000-00000000ffff/resourceGroups/"
                "rg/providers/Microsoft.Compute/snapshots/elsewhere"
            },
            "os_image",
        ),
    ],
)
def test_what_a_clone_cannot_have_is_refused_without_a_call(
    azure: vmkit.Provider, overrides: dict[str, Any], field: str
) -> None:
    snapshot = (
        f"/subscriptions/{SIM_SUBSCRIPTION}/resourceGroups/rg-test/providers/"
        "Microsoft.Compute/snapshots/any"
    )
    with pytest.raises(vmkit.SpecError) as info:
        azure.plan(web(name="clone", **{"os_image": snapshot, **overrides}))
    assert info.value.field == field
    assert sum(azure.api_calls.values()) == 0


@pytest.mark.parametrize("how", ["refused-by-the-quota", "failed-to-provision"])
def test_a_failed_clone_replica_leaves_no_disk(
    azure: vmkit.Provider, fake: AzureFake, how: str
) -> None:
    cores = cores_of_one_vm(azure, fake)
    (original,) = azure.deploy(web(replicas=1))
    snap = original.snapshot("golden")
    clone = web(name="clone", replicas=2, os_image=snap.id)
    if how == "refused-by-the-quota":
        fake.set_cores_quota(2 * cores)  # the original and one clone
    else:
        fake.fail_vm_create("clone-1", count=1)
    with pytest.raises(vmkit.QuotaExceeded) as info:
        azure.deploy(clone)
    (failed,) = info.value.failed
    kept = "clone-1" if failed == "clone-0" else "clone-0"
    assert names(fake, DISK) == [f"{kept}-osdisk", "web-0-osdisk"]
    assert names(fake, NIC) == [f"{kept}-nic", "web-0-nic"]
    fake.set_cores_quota(None)
    assert [m.replica for m in azure.deploy(clone)] == [0, 1]


def test_gc_finds_a_clone_disk_a_crash_left(azure: vmkit.Provider, fake: AzureFake) -> None:
    (original,) = azure.deploy(web(replicas=1))
    snap = original.snapshot("golden")
    body = azure.plan(web(name="clone", replicas=1, os_image=snap.id)).requests[0].body
    disk = (
        make_clients(fake, SIM_SUBSCRIPTION)
        .compute.disks.begin_create_or_update(
            "rg-test", body["osDisk"]["name"], body["osDisk"]["parameters"]
        )
        .result()
    )
    assert azure.gc(dry_run=True) == []  # a moment old: it may be a deploy's, in flight
    fake.backdate(disk.id, 3600)
    assert [(o.kind, o.name, o.workload) for o in azure.gc()] == [
        ("disk", "clone-0-osdisk", "clone")
    ]
    assert names(fake, DISK) == ["web-0-osdisk"]


# ------------------------------------------------------------------- delete


def test_destroy_deletes_nothing_the_vms_took_along(azure: vmkit.Provider, fake: AzureFake) -> None:
    azure.deploy(web(replicas=3))
    fake.requests.clear()
    azure.destroy("web")
    for kind in (VM, NIC, PIP, DISK, NSG, VNET):
        assert names(fake, kind) == [], kind
    # deleteOption Delete took each VM's NIC, IP and disk: no DELETE for them (there
    # were nine before, three per replica), one listing of each kind instead (the NICs
    # and IPs are listed once more by the listing of the machines to delete).
    assert fake.requests["DELETE virtualMachines"] == 3
    for route, listings in (("networkInterfaces", 2), ("publicIPAddresses", 2), ("disks", 1)):
        assert fake.requests[f"DELETE {route}"] == 0, route
        assert fake.requests[f"GET {route}.list"] == listings, route


def test_destroy_deletes_what_an_older_vm_left_behind(
    azure: vmkit.Provider, fake: AzureFake
) -> None:
    azure.deploy(web(replicas=1))
    # Replica 1 as a VM made without deleteOptions leaves it: all of its parts stay.
    body = azure.plan(web(replicas=2)).requests[0].body
    vm = body["virtualMachine"]["parameters"]
    vm["properties"]["storageProfile"]["osDisk"]["deleteOption"] = "Detach"
    vm["properties"]["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] = (
        "Detach"
    )
    nic = body["networkInterface"]["parameters"]
    del nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["properties"]
    clients = make_clients(fake, SIM_SUBSCRIPTION)
    clients.network.public_ip_addresses.begin_create_or_update(
        "rg-test", "web-1-ip", body["publicIPAddress"]["parameters"]
    ).result()
    clients.network.network_interfaces.begin_create_or_update("rg-test", "web-1-nic", nic).result()
    clients.compute.virtual_machines.begin_create_or_update("rg-test", "web-1", vm).result()
    fake.requests.clear()
    azure.destroy("web")
    for kind in (VM, NIC, PIP, DISK, NSG, VNET):
        assert names(fake, kind) == [], kind
    for route in ("networkInterfaces", "publicIPAddresses", "disks"):
        assert fake.requests[f"DELETE {route}"] == 1, route
