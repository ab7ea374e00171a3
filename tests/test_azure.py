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


def test_snapshot_restore_swaps_the_os_disk(azure: vmkit.Provider, fake: AzureFake) -> None:
    (machine,) = azure.deploy(web(replicas=1))
    snap = machine.snapshot("before")
    assert snap.id.startswith(f"/subscriptions/{SIM_SUBSCRIPTION}/")
    restored = machine.restore(snap)
    assert restored.state == vmkit.MachineState.RUNNING
    (disk,) = fake.resources(DISK)
    assert disk["name"] != "web-0-osdisk"
    assert disk["properties"]["creationData"]["sourceResourceId"].lower() == snap.id.lower()
    machine.delete()
    assert names(fake, DISK) == []


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
