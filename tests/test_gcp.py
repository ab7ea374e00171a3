"""What is specific to the Compute Engine backend, against the HTTP fake."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("google.cloud.compute_v1")

from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

import vmkit
from vmkit.errors import AuthError, QuotaExceeded
from vmkit.providers.gcp import GcpProvider
from vmkit.testing.fakes.gce import GceFake, make_clients
from vmkit.testing.fakes.gce.sim import catalog_machine_types

PROJECT = "vmkit-test"
ZONE = "us-central1-a"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0ZXN0a2V5 me@laptop"


def connect(fake: GceFake, **options: Any) -> GcpProvider:
    provider = vmkit.connect(
        "gcp",
        project=PROJECT,
        zone=options.pop("zone", ZONE),
        endpoint=fake.url,
        credentials=options.pop("credentials", AnonymousCredentials()),  # type: ignore[no-untyped-call]
        poll_interval=0.01,
        retry_timeout=10,
        **options,
    )
    assert isinstance(provider, GcpProvider)
    return provider


@pytest.fixture
def fake() -> Iterator[GceFake]:
    with GceFake(
        operation_delay=0.01, transition_delay=0.02, machine_types=catalog_machine_types()
    ) as server:
        assert isinstance(server, GceFake)
        yield server


@pytest.fixture
def gcp(fake: GceFake) -> GcpProvider:
    return connect(fake)


def web(name: str = "web", replicas: int = 3, **fields: Any) -> vmkit.Workload:
    fields.setdefault("ports", [80])
    return vmkit.Workload(name=name, image="nginx:1.27", replicas=replicas, **fields)


# ---------------------------------------------------------------- batching


def test_n_replicas_are_one_bulk_insert_waited_on_with_one_list_per_round(
    fake: GceFake, gcp: GcpProvider
) -> None:
    machines = gcp.deploy(web(replicas=5))
    assert [m.name for m in machines] == [f"web-{i}" for i in range(5)]
    assert fake.count("instances.bulkInsert") == 1
    assert fake.count("instances.insert") == 0
    assert gcp.api_calls["compute:instances.bulkInsert"] == 1
    # the operation is polled on the fake's endpoint, never through the SDK's
    # own poller (which would call compute.googleapis.com)
    assert fake.count("zoneOperations.wait") >= 1
    assert fake.count("instances.get") == 0
    assert gcp.api_calls["compute:instances.list"] == fake.count("instances.list")
    # a second deploy creates nothing
    gcp.deploy(web(replicas=5))
    assert fake.count("instances.bulkInsert") == 1


def test_a_lost_bulk_insert_answer_is_retried_with_the_same_request_id(
    fake: GceFake, gcp: GcpProvider
) -> None:
    fake.faults.drop_responses(count=1, path=r"/instances/bulkInsert$")
    machines = gcp.deploy(web(replicas=3))
    assert fake.count("instances.bulkInsert") == 2
    assert sorted(i["name"] for i in fake.instances()) == ["web-0", "web-1", "web-2"]
    assert len({m.id for m in machines}) == 3
    bulk_ops = [op for op in fake.state.operations.values() if op.op_type == "bulkInsert"]
    assert len(bulk_ops) == 1, "the retry replayed the first operation"


def test_scaling_up_asks_only_for_the_missing_names(fake: GceFake, gcp: GcpProvider) -> None:
    gcp.deploy(web(replicas=1))
    plan = gcp.plan(web(replicas=3))
    (request,) = plan.requests
    resource = request.body["bulkInsertInstanceResource"]
    assert sorted(resource["perInstanceProperties"]) == ["web-1", "web-2"]
    # minCount 1: Compute Engine makes what fits and refuses the rest
    assert (resource["count"], resource["minCount"]) == ("2", "1")
    first = request.body["requestId"]
    assert gcp.plan(web(replicas=3)).requests[0].body["requestId"] != first


# ----------------------------------------------------------------- firewall


def test_firewall_opens_only_declared_ports_to_the_workload_tag(
    fake: GceFake, gcp: GcpProvider
) -> None:
    gcp.deploy(web(replicas=1, ports=[80, vmkit.Port(port=53, protocol="udp")]))
    clients = make_clients(fake)
    rule = clients.firewalls.get(project=PROJECT, firewall="vmkit-web")
    assert {(a.I_p_protocol, tuple(a.ports)) for a in rule.allowed} == {
        ("tcp", ("80",)),
        ("udp", ("53",)),
    }
    assert list(rule.target_tags) == ["vmkit-web"]
    assert list(rule.source_ranges) == ["0.0.0.0/0"]
    instance = fake.instance("web-0", zone=ZONE)
    assert instance is not None
    assert instance["tags"]["items"] == ["vmkit-web"]
    keys = {i["key"] for i in instance["metadata"]["items"]}
    assert "ssh-keys" not in keys
    assert "user-data" in keys
    assert instance["networkInterfaces"][0]["accessConfigs"][0]["type"] == "ONE_TO_ONE_NAT"


def test_ssh_key_opens_22_and_is_passed_as_metadata(fake: GceFake, gcp: GcpProvider) -> None:
    workload = web(
        replicas=1, ssh_public_key=KEY, options={"gcp": {"source_ranges": ["10.0.0.0/8"]}}
    )
    gcp.deploy(workload)
    rule = make_clients(fake).firewalls.get(project=PROJECT, firewall="vmkit-web")
    assert {(a.I_p_protocol, tuple(a.ports)) for a in rule.allowed} == {("tcp", ("22", "80"))}
    assert list(rule.source_ranges) == ["10.0.0.0/8"]
    instance = fake.instance("web-0", zone=ZONE)
    assert instance is not None
    metadata = {i["key"]: i["value"] for i in instance["metadata"]["items"]}
    assert metadata["ssh-keys"] == f"vmkit:{KEY}"


def test_a_drifted_rule_is_put_back_and_destroy_deletes_it(fake: GceFake, gcp: GcpProvider) -> None:
    gcp.deploy(web(replicas=1))
    clients = make_clients(fake)
    drift = compute_v1.Firewall(
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["80", "3306"])]
    )
    op = clients.firewalls.patch(project=PROJECT, firewall="vmkit-web", firewall_resource=drift)
    clients.global_operations.wait(project=PROJECT, operation=op.name)
    gcp.deploy(web(replicas=1))
    rule = clients.firewalls.get(project=PROJECT, firewall="vmkit-web")
    assert [tuple(a.ports) for a in rule.allowed] == [("80",)]
    gcp.destroy("web")
    assert [f.name for f in clients.firewalls.list(project=PROJECT)] == []


def test_no_ports_and_no_key_means_no_rule_and_no_external_ip(
    fake: GceFake, gcp: GcpProvider
) -> None:
    gcp.deploy(web(replicas=1, ports=[]))
    assert list(make_clients(fake).firewalls.list(project=PROJECT)) == []
    instance = fake.instance("web-0", zone=ZONE)
    assert instance is not None
    assert "accessConfigs" not in instance["networkInterfaces"][0]


# ---------------------------------------------------------- request content


def test_shielded_vm_auto_delete_disk_and_labels(fake: GceFake, gcp: GcpProvider) -> None:
    workload = web(replicas=1, labels={"team": "infra"}, resources={"disk": "25GiB"})
    (machine,) = gcp.deploy(workload)
    instance = fake.instance("web-0", zone=ZONE)
    assert instance is not None
    assert instance["shieldedInstanceConfig"] == {
        "enableSecureBoot": True,
        "enableVtpm": True,
        "enableIntegrityMonitoring": True,
    }
    boot = instance["disks"][0]
    assert (boot["boot"], boot["autoDelete"], boot["diskSizeGb"]) == (True, True, "25")
    assert instance["labels"] == {
        "team": "infra",
        "vmkit-workload": "web",
        "vmkit-spec": workload.spec_hash,
    }
    assert instance["scheduling"]["provisioningModel"] == "STANDARD"
    assert machine.labels == {"team": "infra"}
    assert machine.replica == 0
    assert machine.public_ip
    assert machine.private_ip
    gcp.destroy("web")
    assert list(make_clients(fake).disks.list(project=PROJECT, zone=ZONE)) == []


def test_spot_sets_the_spot_scheduling(fake: GceFake, gcp: GcpProvider) -> None:
    plan = gcp.plan(web(replicas=1, spot=True))
    props = plan.requests[0].body["bulkInsertInstanceResource"]["instanceProperties"]
    assert props["scheduling"] == {
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "DELETE",
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
    }
    gcp.apply(plan)
    instance = fake.instance("web-0", zone=ZONE)
    assert instance is not None
    assert instance["scheduling"]["provisioningModel"] == "SPOT"
    assert instance["scheduling"]["instanceTerminationAction"] == "DELETE"


def test_gpu_machine_types_have_built_in_gpus(gcp: GcpProvider) -> None:
    plan = gcp.plan(web(replicas=1, resources={"gpu": 1, "cpu": 4, "memory": "16GiB"}))
    props = plan.requests[0].body["bulkInsertInstanceResource"]["instanceProperties"]
    assert props["machineType"] == "g2-standard-4"
    assert "guestAccelerators" not in props
    assert props["scheduling"]["onHostMaintenance"] == "TERMINATE"


# ----------------------------------------------------------- machine types


def test_machine_type_is_the_cheapest_offered_and_the_override_wins() -> None:
    offered = [m for m in catalog_machine_types() if m.name != "e2-standard-2"]
    with GceFake(operation_delay=0.01, transition_delay=0.02, machine_types=offered) as fake:
        gcp = connect(fake)
        body = gcp.plan(web(replicas=1, resources={"cpu": 2, "memory": "8GiB"})).requests[0].body
        # e2-standard-2 is the catalog's cheapest fit, but this zone lacks it
        assert body["bulkInsertInstanceResource"]["instanceProperties"]["machineType"] == (
            "n2d-standard-2"
        )
        assert fake.count("machineTypes.list") == 1
        pinned = web(replicas=1, options={"gcp": {"machine_type": "n2-standard-8"}})
        (machine,) = gcp.deploy(pinned)
        assert machine.size == "n2-standard-8"


# ---------------------------------------------------------------- listing


def test_listing_filters_on_the_workload_label_and_follows_pages(
    fake: GceFake, gcp: GcpProvider
) -> None:
    gcp.deploy(web("web", replicas=5))
    gcp.deploy(web("db", replicas=2))
    gcp.page_size = 2
    before = fake.count("instances.list")
    assert [m.name for m in gcp.list("web")] == [f"web-{i}" for i in range(5)]
    assert fake.count("instances.list") - before == 3
    assert len(gcp.list()) == 7
    # an instance vmkit does not own is never listed
    clients = make_clients(fake)
    rogue = compute_v1.Instance(
        name="rogue",
        machine_type=f"zones/{ZONE}/machineTypes/e2-small",
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image="projects/debian-cloud/global/images/family/debian-12"
                ),
            )
        ],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )
    op = clients.instances.insert(project=PROJECT, zone=ZONE, instance_resource=rogue)
    clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert "rogue" not in [m.name for m in gcp.list()]
    rogue_id = clients.instances.get(project=PROJECT, zone=ZONE, instance="rogue").id
    with pytest.raises(vmkit.NotFound):
        gcp.get(str(rogue_id))


# --------------------------------------------------------- quota and errors


def test_quota_refused_up_front_is_quota_exceeded_and_leaves_nothing(
    fake: GceFake, gcp: GcpProvider
) -> None:
    fake.set_quota(cpus=1)
    with pytest.raises(QuotaExceeded) as info:
        gcp.deploy(web(replicas=3, resources={"cpu": 2}))
    assert "Quota 'CPUS' exceeded.  Limit: 1.0 in region us-central1." in str(info.value)
    assert sorted(info.value.failed) == ["web-0", "web-1", "web-2"]
    assert fake.instances() == []
    assert list(make_clients(fake).firewalls.list(project=PROJECT)) == []


def test_a_quota_short_of_the_request_keeps_what_fits_and_names_the_rest(
    fake: GceFake, gcp: GcpProvider
) -> None:
    fake.set_quota(cpus=4)
    workload = web(replicas=3, resources={"cpu": 2})
    with pytest.raises(QuotaExceeded) as info:
        gcp.deploy(workload)
    assert list(info.value.failed) == ["web-2"]
    assert "Quota 'CPUS' exceeded.  Limit: 4.0 in region us-central1." in info.value.failed["web-2"]
    assert "QUOTA_EXCEEDED" in str(info.value)
    assert sorted(i["name"] for i in fake.instances()) == ["web-0", "web-1"]
    # the rule serves the replicas that stay
    assert [f.name for f in make_clients(fake).firewalls.list(project=PROJECT)] == ["vmkit-web"]
    fake.set_quota(cpus=None)
    assert [m.name for m in gcp.deploy(workload)] == ["web-0", "web-1", "web-2"]
    assert fake.count("instances.delete") == 0


def test_exhausted_zone_is_quota_exceeded_and_not_retried(fake: GceFake, gcp: GcpProvider) -> None:
    fake.exhaust_zone(ZONE)
    with pytest.raises(QuotaExceeded) as info:
        gcp.deploy(web(replicas=2))
    assert "does not have enough resources available" in str(info.value)
    assert fake.count("instances.bulkInsert") == 1


def test_an_exhausted_zone_on_start_shows_the_operation_error(
    fake: GceFake, gcp: GcpProvider
) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    machine.stop()
    fake.exhaust_zone(ZONE)
    with pytest.raises(QuotaExceeded) as info:
        machine.start()
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in str(info.value)
    assert "web-0" in str(info.value)


def test_throttling_and_unavailable_answers_are_retried(fake: GceFake, gcp: GcpProvider) -> None:
    fake.faults.fail(429, count=2, method="POST", path=r"/bulkInsert$")
    fake.faults.fail(503, count=2, method="GET", path=r"/instances$")
    machines = gcp.deploy(web(replicas=2))
    assert len(machines) == 2
    assert gcp.api_calls["compute:instances.bulkInsert"] == 3
    assert len(fake.instances()) == 2


def test_refused_credentials_are_an_auth_error() -> None:
    from google.oauth2.credentials import Credentials

    with GceFake(token="s3cret", operation_delay=0, transition_delay=0) as fake:
        gcp = connect(fake, credentials=Credentials("wrong"))
        with pytest.raises(AuthError) as info:
            gcp.list("web")
        assert "wrong" not in str(info.value)
        assert connect(fake, credentials=Credentials("s3cret")).list("web") == []


def test_connect_makes_no_call_and_credentials_status() -> None:
    gcp = vmkit.connect("gcp", project="p", zone="us-central1-a", credentials=object())
    assert gcp.location == "us-central1-a"
    assert sum(gcp.api_calls.values()) == 0
    assert GcpProvider.credentials_status(credentials=object()) is None
    with pytest.raises(vmkit.ConfigError):
        vmkit.connect("gcp", project="p", zone="central")


def test_names_that_cannot_be_instance_names_fail_before_any_call(gcp: GcpProvider) -> None:
    with pytest.raises(vmkit.SpecError) as info:
        gcp.plan(web("9lives", replicas=1))
    assert info.value.field == "name"
    with pytest.raises(vmkit.SpecError) as bad:
        gcp.plan(web(replicas=1, options={"gcp": {"zone": "x"}}))
    assert bad.value.field == "options.gcp.zone"
    assert sum(gcp.api_calls.values()) == 0


# --------------------------------------------------------------- snapshots


def disk_names(clients: Any) -> list[str]:
    return sorted(d.name for d in clients.disks.list(project=PROJECT, zone=ZONE))


def boot_of(clients: Any, instance: str) -> Any:
    (boot,) = clients.instances.get(project=PROJECT, zone=ZONE, instance=instance).disks
    return boot


def test_a_snapshot_records_its_size_replica_and_labels(fake: GceFake, gcp: GcpProvider) -> None:
    _, machine = gcp.deploy(web(replicas=2, resources=vmkit.Resources(disk="30GiB")))
    snap = machine.snapshot("before upgrade")
    assert (snap.name, snap.machine, snap.replica, snap.size) == (
        "before upgrade",
        machine.id,
        1,
        30,
    )
    stored = make_clients(fake).snapshots.get(project=PROJECT, snapshot=snap.id)
    assert dict(stored.labels) == {
        "vmkit-workload": "web",
        "vmkit-replica": "1",
        "vmkit-machine": machine.id,
    }
    assert [(s.id, s.replica, s.size) for s in gcp.snapshots("web")] == [(snap.id, 1, 30)]


def test_restore_puts_the_machine_on_a_new_disk_from_the_snapshot(
    fake: GceFake, gcp: GcpProvider
) -> None:
    (machine,) = gcp.deploy(web(replicas=1, labels={"team": "infra"}))
    clients = make_clients(fake)
    before = clients.instances.get(project=PROJECT, zone=ZONE, instance="web-0")
    old = clients.disks.get(project=PROJECT, zone=ZONE, disk="web-0")
    snap = machine.snapshot("before upgrade")
    restored = machine.restore(snap)

    kept = ("id", "name", "replica", "workload", "labels", "private_ip")
    assert [getattr(restored, f) for f in kept] == [getattr(machine, f) for f in kept]
    assert restored.state == vmkit.MachineState.RUNNING
    after = clients.instances.get(project=PROJECT, zone=ZONE, instance="web-0")
    assert after.status == "RUNNING"
    assert after.network_interfaces[0].network_i_p == before.network_interfaces[0].network_i_p
    assert dict(after.labels) == dict(before.labels)
    boot = boot_of(clients, "web-0")
    new_name = boot.source.rsplit("/", 1)[-1]
    assert new_name != "web-0"
    assert (boot.boot, boot.auto_delete, boot.device_name) == (True, True, "persistent-disk-0")
    new = clients.disks.get(project=PROJECT, zone=ZONE, disk=new_name)
    assert new.source_snapshot.endswith(f"/projects/{PROJECT}/global/snapshots/{snap.id}")
    assert (dict(new.labels), new.type_, new.size_gb) == (dict(old.labels), old.type_, old.size_gb)
    assert disk_names(clients) == [new_name], "the old boot disk is detached and deleted"
    calls = gcp.api_calls
    assert (calls["compute:instances.detachDisk"], calls["compute:instances.attachDisk"]) == (1, 1)
    assert not gcp.plan(web(replicas=1, labels={"team": "infra"})).changes


def test_restore_of_a_stopped_machine_returns_it_running(fake: GceFake, gcp: GcpProvider) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    snap = machine.snapshot("cold")
    stopped = machine.stop()
    restored = stopped.restore(snap)
    assert restored.state == vmkit.MachineState.RUNNING
    assert gcp.api_calls["compute:instances.stop"] == 1, "a stopped machine is not stopped again"


@pytest.mark.parametrize("step", ["detachDisk", "attachDisk", "start"])
def test_a_restore_failing_part_way_leaves_the_old_boot_disk(
    fake: GceFake, gcp: GcpProvider, step: str
) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    snap = machine.snapshot("before")
    fake.faults.fail(400, count=1, method="POST", path=rf"/instances/web-0/{step}$")
    with pytest.raises(vmkit.ProviderError) as failed:
        machine.restore(snap)
    assert f"instances.{step}" in str(failed.value)
    clients = make_clients(fake)
    boot = boot_of(clients, "web-0")
    assert (boot.source.rsplit("/", 1)[-1], boot.boot, boot.auto_delete) == ("web-0", True, True)
    assert disk_names(clients) == ["web-0"], "the new disk is deleted"
    assert gcp.get(machine.id).state == vmkit.MachineState.RUNNING, "it ran, so it runs again"


def test_gc_keeps_the_old_boot_disk_of_a_restore_whose_undo_failed_too(
    fake: GceFake, gcp: GcpProvider
) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    snap = machine.snapshot("before")
    # The new disk's attach fails, and so does the undo's attach of the old one.
    fake.faults.fail(400, count=2, method="POST", path=r"/instances/web-0/attachDisk$")
    with pytest.raises(vmkit.ProviderError):
        machine.restore(snap)
    clients = make_clients(fake)
    assert not clients.instances.get(project=PROJECT, zone=ZONE, instance="web-0").disks
    fake.backdate_disk("web-0", 11 * 60, zone=ZONE)
    assert "web-0" not in [o.name for o in gcp.gc("web", dry_run=True)]
    gcp.gc("web")
    assert "web-0" in disk_names(clients), "the only copy of the boot disk is kept"


def test_a_restore_whose_new_disk_is_refused_never_stops_the_machine(
    fake: GceFake, gcp: GcpProvider
) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    snap = machine.snapshot("before")
    fake.faults.fail(400, count=1, method="POST", path=r"/disks$")
    with pytest.raises(vmkit.ProviderError):
        machine.restore(snap)
    assert gcp.api_calls["compute:instances.stop"] == 0
    assert disk_names(make_clients(fake)) == ["web-0"]
    assert gcp.get(machine.id).state == vmkit.MachineState.RUNNING


def test_a_restore_of_a_deleted_snapshot_changes_nothing(fake: GceFake, gcp: GcpProvider) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    snap = machine.snapshot("gone")
    snap.delete()
    with pytest.raises(vmkit.NotFound):
        machine.restore(snap)
    assert gcp.api_calls["compute:instances.stop"] == 0
    assert gcp.api_calls["compute:disks.insert"] == 0


def test_delete_snapshot_refuses_a_snapshot_vmkit_did_not_make(
    fake: GceFake, gcp: GcpProvider
) -> None:
    gcp.deploy(web(replicas=1))
    clients = make_clients(fake)
    op = clients.disks.create_snapshot(
        project=PROJECT,
        zone=ZONE,
        disk="web-0",
        snapshot_resource=compute_v1.Snapshot(name="someone-elses"),
    )
    clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)
    with pytest.raises(vmkit.NotFound, match="not a vmkit snapshot"):
        gcp.delete_snapshot("someone-elses")
    assert clients.snapshots.get(project=PROJECT, snapshot="someone-elses").name
    gcp.delete_snapshot("never-existed")  # idempotent


def test_snapshots_survive_destroy_and_gc_never_lists_them(fake: GceFake, gcp: GcpProvider) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    snap = machine.snapshot("backup")
    machine.restore(snap)
    gcp.destroy("web")
    clients = make_clients(fake)
    assert disk_names(clients) == [], "the restored boot disk went with the instance"
    assert [s.name for s in clients.snapshots.list(project=PROJECT)] == [snap.id]
    assert gcp.gc(dry_run=True) == []
    assert gcp.gc() == []
    assert [s.id for s in gcp.snapshots("web")] == [snap.id]
    gcp.destroy("web", snapshots=True)
    assert list(clients.snapshots.list(project=PROJECT)) == []


def test_gc_spares_a_fresh_unattached_disk_of_a_live_workload(
    fake: GceFake, gcp: GcpProvider
) -> None:
    gcp.deploy(web(replicas=1))
    clients = make_clients(fake)
    # what a restore in progress shows between disks.insert and attachDisk
    disk = compute_v1.Disk(name="web-0-5eed5eed", labels={"vmkit-workload": "web"})
    op = clients.disks.insert(project=PROJECT, zone=ZONE, disk_resource=disk)
    clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert gcp.gc("web", dry_run=True) == []
    fake.backdate_disk("web-0-5eed5eed", 11 * 60, zone=ZONE)
    assert [o.name for o in gcp.gc("web", dry_run=True)] == ["web-0-5eed5eed"]


# ------------------------------------------------------------------ clones


def test_a_clone_boots_each_replica_from_the_snapshot(fake: GceFake, gcp: GcpProvider) -> None:
    (origin,) = gcp.deploy(web("orig", replicas=1, resources=vmkit.Resources(disk="40GiB")))
    snap = origin.snapshot("golden")
    path = f"projects/{PROJECT}/global/snapshots/{snap.id}"
    clone = web("clone", replicas=2, os_image=snap.id)
    plan = gcp.plan(clone)
    assert [(r.operation, r.replicas) for r in plan.requests] == [
        ("compute:instances.insert", (0,)),
        ("compute:instances.insert", (1,)),
    ]
    (disk,) = plan.requests[0].body["instanceResource"]["disks"]
    assert disk["initializeParams"]["sourceSnapshot"] == path
    assert disk["initializeParams"]["diskSizeGb"] == "40", "never smaller than the snapshot"
    bulk_before = gcp.api_calls["compute:instances.bulkInsert"]

    machines = gcp.deploy(clone)
    assert [(m.name, m.replica, m.state, m.image) for m in machines] == [
        ("clone-0", 0, vmkit.MachineState.RUNNING, path),
        ("clone-1", 1, vmkit.MachineState.RUNNING, path),
    ]
    assert gcp.api_calls["compute:instances.insert"] == 2
    assert gcp.api_calls["compute:instances.bulkInsert"] == bulk_before
    clients = make_clients(fake)
    for machine in machines:
        made = clients.disks.get(project=PROJECT, zone=ZONE, disk=machine.name)
        assert made.source_snapshot.endswith(f"/{path}")
        assert made.size_gb == 40
        labels = clients.instances.get(project=PROJECT, zone=ZONE, instance=machine.name).labels
        assert labels["vmkit-replica"] == str(machine.replica)
    assert not gcp.plan(clone).changes
    assert gcp.deploy(clone) == machines


def test_a_clone_short_of_quota_keeps_the_replica_that_fits(
    fake: GceFake, gcp: GcpProvider
) -> None:
    (origin,) = gcp.deploy(web("orig", replicas=1, resources={"cpu": 2}))
    snap = origin.snapshot("golden")
    fake.set_quota(cpus=4)
    clone = web("clone", replicas=2, os_image=snap.id, resources={"cpu": 2})
    with pytest.raises(QuotaExceeded) as info:
        gcp.deploy(clone)
    (refused,) = info.value.failed
    assert "Quota 'CPUS' exceeded" in info.value.failed[refused]
    names = sorted(i["name"] for i in fake.instances())
    assert names == sorted({"orig-0", "clone-0", "clone-1"} - {refused})
    fake.set_quota(cpus=None)
    assert [m.name for m in gcp.deploy(clone)] == ["clone-0", "clone-1"]


def test_a_clone_racing_another_adopts_its_instances(fake: GceFake, gcp: GcpProvider) -> None:
    (origin,) = gcp.deploy(web("orig", replicas=1))
    snap = origin.snapshot("golden")
    clone = web("clone", replicas=2, os_image=snap.id)
    plan = gcp.plan(clone)
    theirs = connect(fake).deploy(clone)
    ours = gcp.apply(plan)
    assert gcp.api_calls["compute:instances.insert"] == 2, "each name answered 409"
    assert [m.id for m in ours] == [m.id for m in theirs]
    assert fake.count("instances.delete") == 0


@pytest.mark.parametrize("form", ["global/snapshots/{}", "projects/vmkit-test/global/snapshots/{}"])
def test_a_clone_takes_a_snapshot_path(fake: GceFake, gcp: GcpProvider, form: str) -> None:
    (origin,) = gcp.deploy(web("orig", replicas=1))
    snap = origin.snapshot("golden")
    (machine,) = gcp.deploy(web("clone", replicas=1, os_image=form.format(snap.id)))
    assert machine.image == f"projects/{PROJECT}/global/snapshots/{snap.id}"


def mutating(calls: dict[str, int]) -> list[str]:
    verbs = ("insert", "update", "patch", "delete", "set", "attach", "detach", "stop", "start")
    return [c for c in calls if any(c.rsplit(".", 1)[-1].startswith(v) for v in verbs)]


def test_a_clone_of_a_missing_snapshot_fails_on_os_image_before_any_change(
    gcp: GcpProvider,
) -> None:
    ghost = web("ghost", replicas=2, os_image="no-such-snapshot")
    with pytest.raises(vmkit.SpecError) as planned:
        gcp.plan(ghost)
    assert planned.value.field == "os_image"
    assert "no-such-snapshot" in str(planned.value)
    with pytest.raises(vmkit.SpecError) as deployed:
        gcp.deploy(ghost)
    assert deployed.value.field == "os_image"
    assert gcp.api_calls["compute:snapshots.get"] == 2
    assert mutating(gcp.api_calls) == []
    with pytest.raises(vmkit.SpecError) as malformed:
        gcp.plan(web("bad", os_image="Not A Snapshot"))
    assert malformed.value.field == "os_image"


def test_isolation_vm_is_recorded_in_the_instance_labels(fake: GceFake, gcp: GcpProvider) -> None:
    (machine,) = gcp.deploy(web("iso", replicas=1, isolation="vm"))
    (plain,) = gcp.deploy(web("plain", replicas=1))
    assert fake.instance("iso-0", zone=ZONE)["labels"]["vmkit-isolation"] == "vm"
    assert "vmkit-isolation" not in fake.instance("plain-0", zone=ZONE)["labels"]
    assert "vmkit-isolation" not in machine.labels, "vmkit's own labels stay out of Machine.labels"
    assert plain.state == machine.state == vmkit.MachineState.RUNNING


def test_plan_body_is_json_and_round_trips_to_the_sdk(gcp: GcpProvider) -> None:
    (request,) = gcp.plan(web(replicas=2)).requests
    text = json.dumps(request.to_dict())
    resource = json.loads(text)["body"]["bulkInsertInstanceResource"]
    message = compute_v1.BulkInsertInstanceResource.from_json(json.dumps(resource))
    assert message.instance_properties.machine_type == resource["instanceProperties"]["machineType"]
    assert "/" not in message.instance_properties.machine_type


# ------------------------------------------------------- racing deploys


def test_a_deploy_racing_another_adopts_its_instances_and_deletes_none(fake: GceFake) -> None:
    first, second = connect(fake), connect(fake)
    workload = web(replicas=3)
    plans = [first.plan(workload), second.plan(workload)]  # both see an empty zone
    made = first.apply(plans[0])
    adopted = second.apply(plans[1])
    assert [m.id for m in adopted] == [m.id for m in made]
    assert fake.count("instances.bulkInsert") == 2
    assert fake.count("instances.delete") == 0
    assert sorted(i["name"] for i in fake.instances()) == ["web-0", "web-1", "web-2"]


def test_a_failed_create_never_deletes_an_instance_it_did_not_make(fake: GceFake) -> None:
    racer, gcp = connect(fake), connect(fake)
    plan = gcp.plan(web(replicas=3, env={"MODE": "new"}))
    # after that plan was made, another deploy (of another spec) made web-1
    first, theirs = racer.deploy(web(replicas=2))
    first.delete()
    deletes = fake.count("instances.delete")
    with pytest.raises(vmkit.ProviderError) as info:
        gcp.apply(plan)
    assert list(info.value.failed) == ["web-1"]
    assert "RESOURCE_ALREADY_EXISTS" in info.value.failed["web-1"]
    assert fake.count("instances.delete") == deletes
    survivor = fake.instance("web-1", zone=ZONE)
    assert survivor is not None
    assert survivor["id"] == theirs.id
    assert sorted(i["name"] for i in fake.instances()) == ["web-0", "web-1", "web-2"]


def test_a_rule_a_racing_deploy_is_inserting_is_taken_as_made() -> None:
    with GceFake(
        operation_delay=0.3, transition_delay=0.02, machine_types=catalog_machine_types()
    ) as fake:
        gcp = connect(fake)
        rule = gcp.plan(web(replicas=1)).workload
        body = compute_v1.Firewall.from_json(
            json.dumps(
                {
                    "name": "vmkit-web",
                    "description": "vmkit workload web: declared ports only",
                    "network": "global/networks/default",
                    "direction": "INGRESS",
                    "priority": 1000,
                    "allowed": [{"IPProtocol": "tcp", "ports": ["80"]}],
                    "sourceRanges": ["0.0.0.0/0"],
                    "targetTags": ["vmkit-web"],
                }
            )
        )
        # still being inserted: not visible until its operation is done
        make_clients(fake).firewalls.insert(project=PROJECT, firewall_resource=body)
        (machine,) = gcp.deploy(rule)
        assert machine.name == "web-0"
        assert fake.count("firewalls.insert") == 2
        assert fake.count("firewalls.update") == 0


# ---------------------------------------------------------- protection


def protect(fake: GceFake, name: str, protected: bool = True) -> None:
    clients = make_clients(fake)
    request = compute_v1.SetDeletionProtectionInstanceRequest(
        project=PROJECT, zone=ZONE, resource=name, deletion_protection=protected
    )
    op = clients.instances.set_deletion_protection_unary(request=request)
    clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)


def test_destroy_names_a_protected_instance_and_deletes_the_others(
    fake: GceFake, gcp: GcpProvider
) -> None:
    gcp.deploy(web(replicas=3))
    protect(fake, "web-1")
    with pytest.raises(vmkit.ProviderError) as info:
        gcp.destroy("web")
    assert "web-1" in str(info.value)
    assert "protected against deletion" in str(info.value)
    assert "web-0" not in str(info.value)
    deadline = time.monotonic() + 5
    while len(fake.instances()) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [i["name"] for i in fake.instances()] == ["web-1"], "the others were deleted"
    protect(fake, "web-1", False)
    gcp.destroy("web")
    assert fake.instances() == []
    assert list(make_clients(fake).firewalls.list(project=PROJECT)) == []


# -------------------------------------------------------------------- gc


def leftovers(fake: GceFake, workload: str) -> None:
    """What a crash leaves of ``workload``: its rule, a restore's unattached disk."""
    clients = make_clients(fake)
    rule = compute_v1.Firewall.from_json(
        json.dumps(
            {
                "name": f"vmkit-{workload}",
                "description": f"vmkit workload {workload}: declared ports only",
                "allowed": [{"IPProtocol": "tcp", "ports": ["80"]}],
                "targetTags": [f"vmkit-{workload}"],
            }
        )
    )
    op = clients.firewalls.insert(project=PROJECT, firewall_resource=rule)
    clients.global_operations.wait(project=PROJECT, operation=op.name)
    disk = compute_v1.Disk(name=f"{workload}-0-restore", labels={"vmkit-workload": workload})
    op = clients.disks.insert(project=PROJECT, zone=ZONE, disk_resource=disk)
    clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)


def test_gc_finds_only_what_vmkit_left_without_an_instance(fake: GceFake, gcp: GcpProvider) -> None:
    (alive,) = gcp.deploy(web("alive", replicas=1))
    alive.snapshot("backup")
    leftovers(fake, "gone")
    clients = make_clients(fake)
    # look-alikes vmkit did not make: a rule named like vmkit's, an unlabelled disk
    foreign = compute_v1.Firewall.from_json(
        json.dumps({"name": "vmkit-mine", "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]})
    )
    op = clients.firewalls.insert(project=PROJECT, firewall_resource=foreign)
    clients.global_operations.wait(project=PROJECT, operation=op.name)
    op = clients.disks.insert(project=PROJECT, zone=ZONE, disk_resource={"name": "scratch"})
    clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)

    found = gcp.gc(dry_run=True)
    assert sorted((o.kind, o.name, o.workload) for o in found) == [
        ("disk", "gone-0-restore", "gone"),
        ("firewall", "vmkit-gone", "gone"),
    ]
    assert gcp.gc("alive", dry_run=True) == []
    assert [o.name for o in gcp.gc("gone", dry_run=True)] == ["gone-0-restore", "vmkit-gone"]
    assert len(list(clients.disks.list(project=PROJECT, zone=ZONE))) == 3, "dry run deletes nothing"

    assert len(gcp.gc()) == 2
    assert gcp.gc(dry_run=True) == []
    rules = sorted(f.name for f in clients.firewalls.list(project=PROJECT))
    assert rules == ["vmkit-alive", "vmkit-mine"]
    disks = sorted(d.name for d in clients.disks.list(project=PROJECT, zone=ZONE))
    assert disks == ["alive-0", "scratch"]
    assert [s.name for s in gcp.snapshots("alive")] == ["backup"]
    assert [m.name for m in gcp.list("alive")] == ["alive-0"]


def test_gc_of_a_workload_whose_last_instance_went_deletes_its_rule(
    fake: GceFake, gcp: GcpProvider
) -> None:
    (machine,) = gcp.deploy(web(replicas=1))
    assert gcp.gc("web") == []
    machine.delete()
    (orphan,) = gcp.gc("web")
    assert (orphan.kind, orphan.name) == ("firewall", "vmkit-web")
    assert list(make_clients(fake).firewalls.list(project=PROJECT)) == []


# ------------------------------------------------------- zones sharing a rule


def rules(fake: GceFake) -> list[str]:
    return sorted(f.name for f in make_clients(fake).firewalls.list(project=PROJECT))


@pytest.fixture
def east(fake: GceFake) -> GcpProvider:
    """A connection to us-east1-b, where web runs two replicas."""
    provider = connect(fake, zone="us-east1-b")
    provider.deploy(web(replicas=2))
    return provider


def test_gc_keeps_the_rule_of_a_workload_that_runs_in_another_zone(
    fake: GceFake, east: GcpProvider, gcp: GcpProvider
) -> None:
    # the rule is global: this zone has no instance of web, us-east1-b has two
    assert gcp.gc(dry_run=True) == []
    assert gcp.gc() == []
    assert rules(fake) == ["vmkit-web"]
    assert gcp.api_calls["compute:instances.aggregatedList"] == 2
    for machine in east.list("web"):
        machine.delete()
    (orphan,) = gcp.gc()
    assert orphan.name == "vmkit-web"
    assert rules(fake) == []


def test_a_refused_create_keeps_the_rule_another_zone_uses(
    fake: GceFake, east: GcpProvider, gcp: GcpProvider
) -> None:
    fake.set_quota(cpus=0, region="us-central1")
    with pytest.raises(QuotaExceeded):
        gcp.deploy(web(replicas=1))
    assert rules(fake) == ["vmkit-web"]
    assert [m.name for m in east.list("web")] == ["web-0", "web-1"]


def test_destroy_keeps_the_rule_until_no_zone_has_the_workload(
    fake: GceFake, east: GcpProvider, gcp: GcpProvider
) -> None:
    gcp.destroy("web")
    assert rules(fake) == ["vmkit-web"]
    east.destroy("web")
    assert rules(fake) == []


def test_a_zone_that_cannot_be_read_keeps_the_rule(fake: GceFake) -> None:
    east = connect(fake, zone="us-east1-b")
    central = connect(fake, retry_attempts=2)
    east.deploy(web(replicas=1))
    fake.make_unreachable("us-east1-b")
    with pytest.raises(vmkit.ProviderError):
        central.gc()
    fake.set_quota(cpus=0, region="us-central1")
    with pytest.raises(QuotaExceeded):
        central.deploy(web(replicas=1))
    assert rules(fake) == ["vmkit-web"]
    fake.make_unreachable("us-east1-b", unreachable=False)
    assert central.gc() == []
    assert rules(fake) == ["vmkit-web"]


# ------------------------------------- a bulk operation done, then unreadable


def names_settled(fake: GceFake, timeout: float = 5.0) -> list[str]:
    """The names of the instances once none is on its way out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        instances = fake.instances()
        if all(i["status"] not in ("STOPPING", "PROVISIONING") for i in instances):
            return sorted(i["name"] for i in instances)
        time.sleep(0.01)
    return sorted(i["name"] for i in fake.instances())


def test_instances_made_that_cannot_be_listed_are_deleted_not_left_running(
    fake: GceFake, gcp: GcpProvider
) -> None:
    plan = gcp.plan(web(replicas=3))
    # every instances.list from now on fails: the bulk operation completes,
    # then what it made cannot be read
    fake.faults.fail(400, count=None, method="GET", path=r"/zones/[^/]+/instances$")
    with pytest.raises(vmkit.ProviderError) as info:
        gcp.apply(plan)
    assert sorted(info.value.failed) == ["web-0", "web-1", "web-2"]
    fake.faults.clear()
    assert names_settled(fake) == [], "no instance runs that the deploy says it did not make"
    assert "deleted again" in info.value.failed["web-0"]
    assert [m.name for m in gcp.deploy(web(replicas=3))] == ["web-0", "web-1", "web-2"]


def test_unreadable_insert_operations_keep_the_listed_replicas_and_atomic_removes_them(
    fake: GceFake,
) -> None:
    racer, gcp = connect(fake), connect(fake)
    plan = gcp.plan(web(replicas=3, env={"MODE": "new"}))
    first, theirs = racer.deploy(web(replicas=2))
    first.delete()
    # the bulk operation makes web-0 and web-2 (web-1 is taken), then its
    # insert operations, which say so, cannot be read
    fake.faults.fail(400, count=None, method="GET", path=r"/zones/[^/]+/operations$")
    with pytest.raises(vmkit.ProviderError) as info:
        gcp.apply(plan, atomic=True)
    assert list(info.value.failed) == ["web-1"]
    fake.faults.clear()
    survivor = fake.instance("web-1", zone=ZONE)
    assert survivor is not None
    assert survivor["id"] == theirs.id
    assert names_settled(fake) == ["web-1"], "atomic rolled back what this deploy made"


def test_a_failed_bulk_operation_that_made_some_names_keeps_them(fake: GceFake) -> None:
    racer, gcp = connect(fake), connect(fake)
    plan = gcp.plan(web(replicas=3, env={"MODE": "new"}))
    first, theirs = racer.deploy(web(replicas=2))
    first.delete()
    deletes = fake.count("instances.delete")
    fake.report_partial_bulk_errors()
    with pytest.raises(vmkit.ProviderError) as info:
        gcp.apply(plan)
    assert list(info.value.failed) == ["web-1"]
    assert "RESOURCE_ALREADY_EXISTS" in info.value.failed["web-1"]
    assert fake.count("instances.delete") == deletes, "the instances it made are kept"
    assert names_settled(fake) == ["web-0", "web-1", "web-2"]
    survivor = fake.instance("web-1", zone=ZONE)
    assert survivor is not None
    assert survivor["id"] == theirs.id
    assert [m.name for m in gcp.list("web") if m.spec_hash == plan.workload.spec_hash] == [
        "web-0",
        "web-2",
    ]
