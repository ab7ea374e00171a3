"""The Compute Engine fake, driven only through the real google-cloud-compute client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

compute_v1 = pytest.importorskip("google.cloud.compute_v1")

import requests  # noqa: E402
from google.api_core import exceptions as gexc  # noqa: E402

from vmkit.testing.fakes.gce import (  # noqa: E402
    DEFAULT_ZONES,
    GceClients,
    GceFake,
    make_clients,
)

P = "vmkit-test"
Z = "us-central1-a"
DEBIAN = "projects/debian-cloud/global/images/family/debian-12"
LINK = "https://www.googleapis.com/compute/v1"


@pytest.fixture
def fake() -> Iterator[GceFake]:
    with GceFake(operation_delay=0.05, transition_delay=0.1) as server:
        assert isinstance(server, GceFake)
        yield server


@pytest.fixture
def clients(fake: GceFake) -> GceClients:
    return make_clients(fake)


def resource(
    name: str,
    *,
    machine: str = "e2-small",
    labels: dict[str, str] | None = None,
    image: str = DEBIAN,
    auto_delete: bool = True,
    external_ip: bool = True,
    zone: str = Z,
    **extra: Any,
) -> Any:
    nic = compute_v1.NetworkInterface(network="global/networks/default")
    if external_ip:
        nic.access_configs = [compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{zone}/machineTypes/{machine}",
        labels=labels or {},
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=auto_delete,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=image),
            )
        ],
        network_interfaces=[nic],
        **extra,
    )


def insert(clients: GceClients, body: Any, *, rid: str | None = None, zone: str = Z) -> Any:
    request = compute_v1.InsertInstanceRequest(
        project=P, zone=zone, instance_resource=body, request_id=rid or str(uuid.uuid4())
    )
    return clients.instances.insert(request=request)


def wait(clients: GceClients, op: Any, *, zone: str = Z) -> Any:
    return clients.zone_operations.wait(project=P, zone=zone, operation=op.name)


def names(clients: GceClients, flt: str = "", **kwargs: Any) -> list[str]:
    request = compute_v1.ListInstancesRequest(project=P, zone=Z, filter=flt, **kwargs)
    return [i.name for i in clients.instances.list(request=request)]


def bulk(clients: GceClients, *, rid: str | None = None, **fields: Any) -> Any:
    props = compute_v1.InstanceProperties(
        machine_type=fields.pop("machine_type", "e2-small"),
        labels={"vmkit-workload": "batch"},
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=DEBIAN),
            )
        ],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )
    if "names" in fields:
        given = fields.pop("names")
        fields["per_instance_properties"] = {
            n: compute_v1.BulkInsertInstanceResourcePerInstanceProperties(name=n) for n in given
        }
        fields.setdefault("count", len(given))
    body = compute_v1.BulkInsertInstanceResource(instance_properties=props, **fields)
    request = compute_v1.BulkInsertInstanceRequest(
        project=P, zone=Z, bulk_insert_instance_resource_resource=body, request_id=rid
    )
    return clients.instances.bulk_insert(request=request)


# ------------------------------------------------------------------ insert/list


def test_insert_then_get_and_list_filtered_by_labels(clients: GceClients) -> None:
    for name, labels in [
        ("web-0", {"vmkit-workload": "web", "vmkit-replica": "0", "team": "infra"}),
        ("web-1", {"vmkit-workload": "web", "vmkit-replica": "1"}),
        ("db-0", {"vmkit-workload": "db", "vmkit-replica": "0"}),
    ]:
        wait(clients, insert(clients, resource(name, labels=labels)))

    got = clients.instances.get(project=P, zone=Z, instance="web-1")
    assert got.status == "RUNNING"
    assert got.machine_type.endswith(f"/zones/{Z}/machineTypes/e2-small")
    assert got.network_interfaces[0].network_i_p.startswith("10.128.")
    assert got.labels["vmkit-replica"] == "1"
    assert names(clients, 'labels.vmkit-workload = "web"') == ["web-0", "web-1"]
    assert names(clients, "labels.vmkit-workload=db") == ["db-0"]
    assert names(clients, '(labels.vmkit-workload = "web") AND (labels.vmkit-replica = "1")') == [
        "web-1"
    ]
    assert names(clients, "(labels.vmkit-workload = web) (labels.vmkit-replica = 0)") == ["web-0"]
    assert names(clients, "labels.team:*") == ["web-0"]
    assert names(clients, "(name = db-0) OR (labels.team = infra)") == ["db-0", "web-0"]
    assert names(clients, "name = web-* AND status = RUNNING") == ["web-0", "web-1"]
    assert names(clients, "name eq web-.*") == ["web-0", "web-1"]
    assert names(clients, "status != RUNNING") == []


def test_list_pages_follow_next_page_token(fake: GceFake, clients: GceClients) -> None:
    for i in range(5):
        insert(clients, resource(f"node-{i}"))
    request = compute_v1.ListInstancesRequest(project=P, zone=Z, max_results=2)
    pager = clients.instances.list(request=request)
    pages = list(pager.pages)
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert pages[0].next_page_token
    assert not pages[-1].next_page_token
    assert [i.name for p in pages for i in p.items] == [f"node-{i}" for i in range(5)]
    assert fake.count("instances.list") == 3


def test_malformed_filter_and_foreign_page_token_are_400(clients: GceClients) -> None:
    with pytest.raises(gexc.BadRequest):
        names(clients, "(labels.a = b")
    with pytest.raises(gexc.BadRequest):
        names(clients, "name eq a.* AND status = RUNNING")
    with pytest.raises(gexc.BadRequest):
        names(clients, page_token="not-a-token")


# ------------------------------------------------------------ aggregatedList

EAST = "us-east1-b"


def spread(clients: GceClients) -> None:
    """a-0 in us-central1-a; a-1 and b-0 in us-east1-b."""
    for name, zone in [("a-0", Z), ("a-1", EAST), ("b-0", EAST)]:
        body = resource(name, labels={"vmkit-workload": name[0]}, zone=zone)
        wait(clients, insert(clients, body, zone=zone), zone=zone)


def test_aggregated_list_keys_every_zone_and_filters_like_list(
    fake: GceFake, clients: GceClients
) -> None:
    spread(clients)
    request = compute_v1.AggregatedListInstancesRequest(
        project=P, filter='labels.vmkit-workload = "a"'
    )
    (page,) = clients.instances.aggregated_list(request=request).pages
    assert page.kind == "compute#instanceAggregatedList"
    assert set(page.items) == {f"zones/{z}" for z in DEFAULT_ZONES}
    found = {k: [i.name for i in v.instances] for k, v in page.items.items() if v.instances}
    assert found == {f"zones/{Z}": ["a-0"], f"zones/{EAST}": ["a-1"]}
    empty = page.items["zones/europe-west1-b"]
    assert empty.warning.code == "NO_RESULTS_ON_PAGE"
    assert [(d.key, d.value) for d in empty.warning.data] == [("scope", "zones/europe-west1-b")]
    assert fake.count("instances.aggregatedList") == 1
    with pytest.raises(gexc.BadRequest):
        list(clients.instances.aggregated_list(request={"project": P, "filter": "(labels.a = b"}))


def test_aggregated_list_pages_through_every_zone(fake: GceFake, clients: GceClients) -> None:
    spread(clients)
    request = compute_v1.AggregatedListInstancesRequest(project=P, max_results=2)
    pages = list(clients.instances.aggregated_list(request=request).pages)
    listed = [i.name for p in pages for v in p.items.values() for i in v.instances]
    assert sorted(listed) == ["a-0", "a-1", "b-0"]
    assert len(pages) == 2
    assert fake.count("instances.aggregatedList") == 2


def test_aggregated_list_fails_on_an_unreachable_zone_unless_partial_success(
    fake: GceFake, clients: GceClients
) -> None:
    spread(clients)
    fake.make_unreachable(EAST)
    with pytest.raises(gexc.ServiceUnavailable):
        list(clients.instances.aggregated_list(project=P, retry=None))
    # google-cloud-compute's AggregatedListInstancesRequest cannot send
    # returnPartialSuccess: ask over plain HTTP, as the REST reference shows it
    url = f"{fake.url}/compute/v1/projects/{P}/aggregated/instances"
    body = requests.get(url, params={"returnPartialSuccess": "true"}, timeout=10).json()
    assert body["unreachables"] == [f"zones/{EAST}"]
    assert f"zones/{EAST}" not in body["items"]
    assert [i["name"] for i in body["items"][f"zones/{Z}"]["instances"]] == ["a-0"]


# --------------------------------------------------------------------- bulk


def test_bulk_insert_of_named_instances_is_one_request(fake: GceFake, clients: GceClients) -> None:
    op = bulk(clients, names=["job-0", "job-1", "job-2"], rid=str(uuid.uuid4()))
    assert op.operation_type == "bulkInsert"
    done = wait(clients, op)
    assert done.status == compute_v1.Operation.Status.DONE
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{Z}"]
    assert (status.target_vm_count, status.created_vm_count) == (3, 3)
    assert fake.count("instances.bulkInsert") == 1
    assert fake.count("instances.insert") == 0
    listed = clients.instances.list(project=P, zone=Z)
    assert {(i.name, i.status, i.labels["vmkit-workload"]) for i in listed} == {
        ("job-0", "RUNNING", "batch"),
        ("job-1", "RUNNING", "batch"),
        ("job-2", "RUNNING", "batch"),
    }


def inserts_of(clients: GceClients, bulk_op: Any) -> dict[str, Any]:
    """The insert operations of a bulkInsert's group, by instance name."""
    flt = f'(operationType = "insert") AND (operationGroupId = "{bulk_op.operation_group_id}")'
    listed = clients.zone_operations.list(request={"project": P, "zone": Z, "filter": flt})
    return {op.target_link.rsplit("/", 1)[-1]: op for op in listed}


def test_bulk_insert_fails_an_existing_name_and_creates_the_rest(clients: GceClients) -> None:
    taken = wait(clients, insert(clients, resource("job-1")))
    done = wait(clients, bulk(clients, names=["job-0", "job-1", "job-2"], min_count=1))
    assert not done.error.errors
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{Z}"]
    assert (status.created_vm_count, status.failed_to_create_vm_count) == (2, 1)
    inserts = inserts_of(clients, done)
    assert sorted(inserts) == ["job-0", "job-1", "job-2"]
    assert inserts["job-1"].error.errors[0].code == "RESOURCE_ALREADY_EXISTS"
    assert not inserts["job-1"].target_id
    made = {n: str(inserts[n].target_id) for n in ("job-0", "job-2")}
    for name, instance_id in made.items():
        assert not inserts[name].error.errors
        assert str(clients.instances.get(project=P, zone=Z, instance=name).id) == instance_id
    kept = clients.instances.get(project=P, zone=Z, instance="job-1")
    assert str(kept.id) == str(taken.target_id), "the existing instance is untouched"


def test_partial_bulk_errors_knob_fails_the_operation_and_keeps_what_it_made(
    fake: GceFake, clients: GceClients
) -> None:
    wait(clients, insert(clients, resource("job-1")))
    fake.report_partial_bulk_errors()
    done = wait(clients, bulk(clients, names=["job-0", "job-1", "job-2"], min_count=1))
    assert done.error.errors[0].code == "RESOURCE_ALREADY_EXISTS"
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{Z}"]
    assert (status.created_vm_count, status.deleted_vm_count) == (2, 0)
    assert sorted(inserts_of(clients, done)) == ["job-0", "job-1", "job-2"]
    assert names(clients) == ["job-0", "job-1", "job-2"]


def test_bulk_insert_short_of_min_count_creates_nothing(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("job-1")))
    done = wait(clients, bulk(clients, names=["job-0", "job-1", "job-2"]))
    assert done.error.errors[0].code == "RESOURCE_ALREADY_EXISTS"
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{Z}"]
    assert status.created_vm_count == 0
    assert names(clients) == ["job-1"]


def test_bulk_insert_name_pattern_continues_after_highest_number(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("w-05")))
    wait(clients, bulk(clients, name_pattern="w-##", count=2))
    assert names(clients) == ["w-05", "w-06", "w-07"]


def test_bulk_insert_checks_quota_up_front(fake: GceFake, clients: GceClients) -> None:
    fake.set_quota(cpus=4)
    with pytest.raises(gexc.Forbidden) as err:
        bulk(clients, names=["a-0", "a-1", "a-2"])
    assert "Quota 'CPUS' exceeded.  Limit: 4.0 in region us-central1." in err.value.message
    assert err.value.errors[0]["reason"] == "quotaExceeded"
    assert names(clients) == []
    done = wait(clients, bulk(clients, names=["a-0", "a-1", "a-2"], min_count=1))
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{Z}"]
    assert (status.created_vm_count, status.failed_to_create_vm_count) == (2, 1)
    assert names(clients) == ["a-0", "a-1"]
    refused = inserts_of(clients, done)["a-2"].error.errors[0]
    assert refused.code == "QUOTA_EXCEEDED"
    assert refused.message == "Quota 'CPUS' exceeded.  Limit: 4.0 in region us-central1."


def test_bulk_insert_with_machine_type_url_fails_on_the_operation(clients: GceClients) -> None:
    done = wait(
        clients, bulk(clients, names=["x-0"], machine_type=f"zones/{Z}/machineTypes/e2-small")
    )
    assert done.error.errors[0].code == "INTERNAL_ERROR"
    assert names(clients) == []


# ---------------------------------------------------------------- requestId


def test_repeated_request_id_returns_the_same_operation(fake: GceFake, clients: GceClients) -> None:
    rid = str(uuid.uuid4())
    first = insert(clients, resource("solo"), rid=rid)
    second = insert(clients, resource("solo"), rid=rid)
    assert second.name == first.name
    assert names(clients) == ["solo"]
    assert fake.count("instances.insert") == 2
    with pytest.raises(gexc.Conflict):
        insert(clients, resource("solo"), rid=str(uuid.uuid4()))


def test_retried_delete_replays_after_the_instance_is_gone(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("gone")))
    rid = str(uuid.uuid4())
    request = compute_v1.DeleteInstanceRequest(project=P, zone=Z, instance="gone", request_id=rid)
    first = clients.instances.delete(request=request)
    wait(clients, first)
    assert clients.instances.delete(request=request).name == first.name
    request.request_id = str(uuid.uuid4())
    with pytest.raises(gexc.NotFound):
        clients.instances.delete(request=request)


def test_request_id_must_be_a_uuid(clients: GceClients) -> None:
    with pytest.raises(gexc.BadRequest):
        insert(clients, resource("x"), rid="not-a-uuid")
    with pytest.raises(gexc.BadRequest):
        insert(clients, resource("x"), rid=str(uuid.UUID(int=0)))


# --------------------------------------------------------------- operations


def test_operation_goes_from_pending_to_done() -> None:
    with GceFake(operation_delay=0.4, transition_delay=0.4) as fake:
        clients = make_clients(fake)
        op = insert(clients, resource("slow"))
        assert op.status == compute_v1.Operation.Status.PENDING
        assert op.operation_type == "insert"
        assert op.name.startswith("operation-")
        assert op.target_link.endswith(f"/projects/{P}/zones/{Z}/instances/slow")
        pending = clients.zone_operations.list(
            request=compute_v1.ListZoneOperationsRequest(project=P, zone=Z, filter="status != DONE")
        )
        assert [o.name for o in pending] == [op.name]
        time.sleep(0.25)
        got = clients.zone_operations.get(project=P, zone=Z, operation=op.name)
        assert got.status == compute_v1.Operation.Status.RUNNING
        assert got.start_time
        done = clients.zone_operations.wait(project=P, zone=Z, operation=op.name)
        assert done.status == compute_v1.Operation.Status.DONE
        assert done.progress == 100
        assert done.end_time
        assert not done.error.errors
        assert clients.instances.get(project=P, zone=Z, instance="slow").status == "RUNNING"


def test_wait_returns_running_operation_after_its_deadline() -> None:
    with GceFake(operation_delay=5, transition_delay=5, wait_timeout=0.2) as fake:
        clients = make_clients(fake)
        op = insert(clients, resource("slow"))
        started = time.monotonic()
        assert wait(clients, op).status != compute_v1.Operation.Status.DONE
        assert time.monotonic() - started < 2


def test_sdk_poller_would_call_the_public_endpoint(fake: GceFake, clients: GceClients) -> None:
    # ExtendedOperation.result() polls through a ZoneOperationsClient built without
    # client_options; a backend must poll with its own clients.zone_operations.
    poller = clients.instances._transport._zone_operations_client
    assert poller._transport._host == "https://compute.googleapis.com"
    assert clients.zone_operations._transport._host == fake.url


# -------------------------------------------------------------- lifecycle


def test_status_transitions_stop_start_reset_delete(fake: GceFake, clients: GceClients) -> None:
    op = insert(clients, resource("vm"))
    first = clients.instances.get(project=P, zone=Z, instance="vm")
    assert first.status == "PROVISIONING"
    assert first.cpu_platform == "Unknown CPU Platform"
    wait(clients, op)
    running = clients.instances.get(project=P, zone=Z, instance="vm")
    assert running.status == "RUNNING"
    assert running.cpu_platform == "Intel Broadwell"
    first_ip = running.network_interfaces[0].access_configs[0].nat_i_p
    assert first_ip

    again = wait(clients, clients.instances.start(project=P, zone=Z, instance="vm"))
    assert not again.error.errors  # starting a running VM is a no-op
    assert clients.instances.get(project=P, zone=Z, instance="vm").status == "RUNNING"

    stop = clients.instances.stop(project=P, zone=Z, instance="vm")
    assert clients.instances.get(project=P, zone=Z, instance="vm").status == "STOPPING"
    wait(clients, stop)
    stopped = clients.instances.get(project=P, zone=Z, instance="vm")
    assert stopped.status == "TERMINATED"
    assert not stopped.network_interfaces[0].access_configs[0].nat_i_p
    with pytest.raises(gexc.BadRequest) as err:
        clients.instances.reset(project=P, zone=Z, instance="vm")
    assert err.value.errors[0]["reason"] == "resourceNotReady"

    wait(clients, clients.instances.start(project=P, zone=Z, instance="vm"))
    started = clients.instances.get(project=P, zone=Z, instance="vm")
    assert started.status == "RUNNING"
    assert started.network_interfaces[0].access_configs[0].nat_i_p not in ("", first_ip)

    reset = clients.instances.reset(project=P, zone=Z, instance="vm")
    assert reset.operation_type == "reset"
    wait(clients, reset)
    assert clients.instances.get(project=P, zone=Z, instance="vm").status == "RUNNING"

    delete = clients.instances.delete(project=P, zone=Z, instance="vm")
    assert clients.instances.get(project=P, zone=Z, instance="vm").status == "STOPPING"
    wait(clients, delete)
    with pytest.raises(gexc.NotFound):
        clients.instances.get(project=P, zone=Z, instance="vm")
    with pytest.raises(gexc.NotFound):
        clients.disks.get(project=P, zone=Z, disk="vm")


def test_boot_disk_without_auto_delete_outlives_its_instance(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("keep", auto_delete=False)))
    disk = clients.disks.get(project=P, zone=Z, disk="keep")
    assert disk.users[0].endswith("/instances/keep")
    assert disk.source_image.endswith("/debian-cloud/global/images/debian-12-bookworm-v20250113")
    with pytest.raises(gexc.BadRequest):
        clients.disks.delete(project=P, zone=Z, disk="keep")
    wait(clients, clients.instances.delete(project=P, zone=Z, instance="keep"))
    assert not clients.disks.get(project=P, zone=Z, disk="keep").users
    # re-creating the same name collides with the kept disk, on the operation
    done = wait(clients, insert(clients, resource("keep")))
    assert done.error.errors[0].code == "RESOURCE_ALREADY_EXISTS"
    assert done.http_error_status_code == 409


def test_set_labels_requires_the_current_fingerprint(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("lab", labels={"a": "1"})))
    current = clients.instances.get(project=P, zone=Z, instance="lab").label_fingerprint

    def set_labels(labels: dict[str, str], fp: str | None) -> Any:
        body = compute_v1.InstancesSetLabelsRequest(labels=labels)
        if fp is not None:
            body.label_fingerprint = fp
        return clients.instances.set_labels(
            project=P, zone=Z, instance="lab", instances_set_labels_request_resource=body
        )

    with pytest.raises(gexc.PreconditionFailed) as err:
        set_labels({"a": "2"}, None)
    assert err.value.code == 412
    assert err.value.errors[0]["reason"] == "conditionNotMet"
    op = set_labels({"a": "2", "b": "x"}, current)
    assert op.operation_type == "setLabels"
    updated = clients.instances.get(project=P, zone=Z, instance="lab")
    assert dict(updated.labels) == {"a": "2", "b": "x"}
    assert updated.label_fingerprint != current
    with pytest.raises(gexc.PreconditionFailed):
        set_labels({"a": "3"}, current)
    assert clients.instances.get(project=P, zone=Z, instance="lab").labels["a"] == "2"


def test_serial_port_output_offsets(fake: GceFake, clients: GceClients) -> None:
    wait(clients, insert(clients, resource("con")))
    out = clients.instances.get_serial_port_output(project=P, zone=Z, instance="con")
    assert out.start == 0
    assert "Booting from Hard Disk 0" in out.contents
    assert out.contents.endswith("con login: ")
    assert out.next == len(out.contents.encode())
    fake.append_serial("con", "app started\n", zone=Z)
    request = compute_v1.GetSerialPortOutputInstanceRequest(
        project=P, zone=Z, instance="con", start=out.next
    )
    more = clients.instances.get_serial_port_output(request=request)
    assert (more.start, more.contents) == (out.next, "app started\n")
    request.start = -8
    tail = clients.instances.get_serial_port_output(request=request)
    assert tail.contents == "started\n"


# ---------------------------------------------------------- other resources


def test_firewalls_crud(clients: GceClients) -> None:
    rule = compute_v1.Firewall(
        name="vmkit-web",
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["80", "443"])],
        source_ranges=["0.0.0.0/0"],
        target_tags=["vmkit-web"],
    )
    op = clients.firewalls.insert(project=P, firewall_resource=rule)
    done = clients.global_operations.wait(project=P, operation=op.name)
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.operation_type == "insert"
    got = clients.firewalls.get(project=P, firewall="vmkit-web")
    assert (got.priority, got.direction) == (1000, "INGRESS")
    assert got.network.endswith(f"/projects/{P}/global/networks/default")
    assert [a.ports for a in got.allowed] == [["80", "443"]]
    with pytest.raises(gexc.Conflict):
        clients.firewalls.insert(project=P, firewall_resource=rule)
    with pytest.raises(gexc.BadRequest):
        clients.firewalls.insert(
            project=P,
            firewall_resource=compute_v1.Firewall(
                name="both",
                allowed=[compute_v1.Allowed(I_p_protocol="tcp")],
                denied=[compute_v1.Denied(I_p_protocol="udp")],
            ),
        )

    patch = compute_v1.Firewall(source_ranges=["10.0.0.0/8"])
    op = clients.firewalls.patch(project=P, firewall="vmkit-web", firewall_resource=patch)
    clients.global_operations.wait(project=P, operation=op.name)
    patched = clients.firewalls.get(project=P, firewall="vmkit-web")
    assert list(patched.source_ranges) == ["10.0.0.0/8"]
    assert list(patched.target_tags) == ["vmkit-web"]
    request = compute_v1.ListFirewallsRequest(project=P, filter="name = vmkit-*")
    assert [f.name for f in clients.firewalls.list(request=request)] == ["vmkit-web"]

    op = clients.firewalls.delete(project=P, firewall="vmkit-web")
    clients.global_operations.wait(project=P, operation=op.name)
    with pytest.raises(gexc.NotFound):
        clients.firewalls.get(project=P, firewall="vmkit-web")


def test_get_from_family_returns_newest_public_image(clients: GceClients) -> None:
    jammy = clients.images.get_from_family(project="ubuntu-os-cloud", family="ubuntu-2204-lts")
    assert jammy.name == "ubuntu-2204-jammy-v20250112"
    assert jammy.self_link == (
        "https://www.googleapis.com/compute/v1/projects/ubuntu-os-cloud/global/images/"
        "ubuntu-2204-jammy-v20250112"
    )
    assert jammy.architecture == "X86_64"
    noble = clients.images.get_from_family(
        project="ubuntu-os-cloud", family="ubuntu-2404-lts-arm64"
    )
    assert (noble.name, noble.architecture) == ("ubuntu-2404-noble-arm64-v20250107", "ARM64")
    bookworm = clients.images.get_from_family(project="debian-cloud", family="debian-12-arm64")
    assert bookworm.architecture == "ARM64"
    with pytest.raises(gexc.NotFound):
        clients.images.get_from_family(project="debian-cloud", family="debian-99")
    # an arm64 image does not boot on an x86 machine type
    arm = "projects/debian-cloud/global/images/family/debian-12-arm64"
    with pytest.raises(gexc.BadRequest):
        insert(clients, resource("arm", image=arm))
    wait(clients, insert(clients, resource("arm", image=arm, machine="t2a-standard-2")))


def test_create_snapshot_then_list_label_and_delete(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("src")))
    snap = compute_v1.Snapshot(name="src-before", labels={"vmkit-workload": "web"})
    op = clients.disks.create_snapshot(project=P, zone=Z, disk="src", snapshot_resource=snap)
    assert op.operation_type == "createSnapshot"
    assert op.target_link.endswith("/disks/src")
    assert clients.snapshots.get(project=P, snapshot="src-before").status == "CREATING"
    wait(clients, op)
    got = clients.snapshots.get(project=P, snapshot="src-before")
    assert got.status == "READY"
    assert got.source_disk.endswith(f"/zones/{Z}/disks/src")
    request = compute_v1.ListSnapshotsRequest(project=P, filter="labels.vmkit-workload = web")
    assert [s.name for s in clients.snapshots.list(request=request)] == ["src-before"]
    with pytest.raises(gexc.Conflict):
        clients.disks.create_snapshot(project=P, zone=Z, disk="src", snapshot_resource=snap)

    relabel = compute_v1.GlobalSetLabelsRequest(labels={"keep": "yes"})
    with pytest.raises(gexc.PreconditionFailed):
        clients.snapshots.set_labels(
            project=P, resource="src-before", global_set_labels_request_resource=relabel
        )
    relabel.label_fingerprint = got.label_fingerprint
    clients.snapshots.set_labels(
        project=P, resource="src-before", global_set_labels_request_resource=relabel
    )
    assert dict(clients.snapshots.get(project=P, snapshot="src-before").labels) == {"keep": "yes"}

    op = clients.snapshots.delete(project=P, snapshot="src-before")
    clients.global_operations.wait(project=P, operation=op.name)
    with pytest.raises(gexc.NotFound):
        clients.snapshots.get(project=P, snapshot="src-before")


# ------------------------------------------------------- boot disk swaps


def attach_boot(clients: GceClients, instance: str, disk: str, *, auto_delete: bool) -> Any:
    attached = compute_v1.AttachedDisk(
        source=f"projects/{P}/zones/{Z}/disks/{disk}",
        boot=True,
        auto_delete=auto_delete,
        device_name="persistent-disk-0",
    )
    return clients.instances.attach_disk(
        project=P, zone=Z, instance=instance, attached_disk_resource=attached
    )


def detach_boot(clients: GceClients, instance: str) -> Any:
    return clients.instances.detach_disk(
        project=P, zone=Z, instance=instance, device_name="persistent-disk-0"
    )


def test_a_boot_disk_is_swapped_only_while_the_instance_is_terminated(
    clients: GceClients,
) -> None:
    wait(clients, insert(clients, resource("vm")))
    wait(clients, insert(clients, resource("spare", auto_delete=False)))
    wait(clients, clients.instances.delete(project=P, zone=Z, instance="spare"))
    refusal = "Invalid resource usage: 'To {} the boot disk, the instance must be in TERMINATED"
    with pytest.raises(gexc.BadRequest) as running:
        detach_boot(clients, "vm")
    assert running.value.errors[0]["reason"] == "invalidResourceUsage"
    assert refusal.format("detach") in running.value.message
    with pytest.raises(gexc.BadRequest) as in_use:
        clients.disks.delete(project=P, zone=Z, disk="vm")
    assert in_use.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    assert f"is already being used by '{LINK}/projects/{P}/zones/{Z}/instances/vm'" in (
        in_use.value.message
    )

    wait(clients, clients.instances.stop(project=P, zone=Z, instance="vm"))
    detached = wait(clients, detach_boot(clients, "vm"))
    assert detached.operation_type == "detachDisk"
    assert not clients.instances.get(project=P, zone=Z, instance="vm").disks
    old = clients.disks.get(project=P, zone=Z, disk="vm")
    assert (old.status, list(old.users)) == ("READY", []), "a detached disk stays, billed"
    assert old.last_detach_timestamp

    wait(clients, insert(clients, resource("other")))
    with pytest.raises(gexc.BadRequest) as hot:
        attach_boot(clients, "other", "spare", auto_delete=True)
    assert refusal.format("attach") in hot.value.message

    wait(clients, attach_boot(clients, "vm", "spare", auto_delete=True))
    with pytest.raises(gexc.BadRequest) as taken:
        attach_boot(clients, "other", "spare", auto_delete=True)
    assert taken.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    (boot,) = clients.instances.get(project=P, zone=Z, instance="vm").disks
    assert (boot.source.rsplit("/", 1)[-1], boot.boot, boot.auto_delete) == ("spare", True, True)
    assert clients.disks.get(project=P, zone=Z, disk="spare").last_attach_timestamp
    wait(clients, clients.instances.start(project=P, zone=Z, instance="vm"))
    assert clients.instances.get(project=P, zone=Z, instance="vm").status == "RUNNING"

    wait(clients, clients.instances.delete(project=P, zone=Z, instance="vm"))
    with pytest.raises(gexc.NotFound):
        clients.disks.get(project=P, zone=Z, disk="spare")  # autoDelete went with it
    assert not clients.disks.get(project=P, zone=Z, disk="vm").users, "kept until deleted"
    wait(clients, clients.disks.delete(project=P, zone=Z, disk="vm"))
    assert [d.name for d in clients.disks.list(project=P, zone=Z)] == ["other"]


def snapshot_of(clients: GceClients, disk: str, name: str) -> Any:
    snap = compute_v1.Snapshot(name=name)
    op = clients.disks.create_snapshot(project=P, zone=Z, disk=disk, snapshot_resource=snap)
    creating = clients.snapshots.get(project=P, snapshot=name)
    assert (creating.storage_bytes, creating.storage_bytes_status) == (0, "UPDATING")
    wait(clients, op)
    return clients.snapshots.get(project=P, snapshot=name)


def test_snapshot_sizes_and_disks_made_from_a_snapshot(clients: GceClients) -> None:
    big = resource("src")
    big.disks[0].initialize_params.disk_size_gb = 20
    wait(clients, insert(clients, big))
    snap = snapshot_of(clients, "src", "src-snap")
    assert snap.disk_size_gb == 20, "the size of the disk it copies"
    assert 0 < snap.storage_bytes <= 20 * 2**30
    assert snap.storage_bytes_status == "UP_TO_DATE"

    def disk_from(name: str, ref: str, size: int | None = None) -> Any:
        disk = compute_v1.Disk(name=name, source_snapshot=ref, labels={"k": "v"})
        if size is not None:
            disk.size_gb = size
        wait(clients, clients.disks.insert(project=P, zone=Z, disk_resource=disk))
        return clients.disks.get(project=P, zone=Z, disk=name)

    same = disk_from("same", "global/snapshots/src-snap")
    assert same.size_gb == 20
    assert same.source_snapshot == f"{LINK}/projects/{P}/global/snapshots/src-snap"
    assert same.source_snapshot_id == str(snap.id)
    assert (dict(same.labels), list(same.users)) == ({"k": "v"}, [])
    assert disk_from("larger", f"projects/{P}/global/snapshots/src-snap", 50).size_gb == 50
    with pytest.raises(gexc.BadRequest) as smaller:
        disk_from("smaller", "global/snapshots/src-snap", 10)
    assert "diskSizeGb" in smaller.value.message
    with pytest.raises(gexc.BadRequest):
        disk_from("ghost", "global/snapshots/nope")


def test_insert_boots_from_a_snapshot_and_bulk_insert_refuses_one(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("src")))
    snap = snapshot_of(clients, "src", "golden")
    clone = resource("clone")
    clone.disks[0].initialize_params = compute_v1.AttachedDiskInitializeParams(
        source_snapshot="global/snapshots/golden", disk_size_gb=30
    )
    assert not wait(clients, insert(clients, clone)).error.errors
    disk = clients.disks.get(project=P, zone=Z, disk="clone")
    assert (disk.source_snapshot_id, disk.size_gb) == (str(snap.id), 30)
    assert clients.instances.get(project=P, zone=Z, instance="clone").status == "RUNNING"

    props = compute_v1.InstanceProperties(
        machine_type="e2-small",
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_snapshot="global/snapshots/golden"
                ),
            )
        ],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
    )
    body = compute_v1.BulkInsertInstanceResource(
        instance_properties=props, count=2, name_pattern="bulk-#"
    )
    with pytest.raises(gexc.BadRequest) as refused:
        clients.instances.bulk_insert(
            project=P, zone=Z, bulk_insert_instance_resource_resource=body
        )
    assert "snapshots" in refused.value.message
    assert names(clients) == ["clone", "src"]


def test_machine_types_come_from_the_constructor(clients: GceClients) -> None:
    listed = {m.name: m for m in clients.machine_types.list(project=P, zone=Z)}
    assert (listed["e2-small"].guest_cpus, listed["e2-small"].memory_mb) == (2, 2048)
    assert listed["g2-standard-4"].accelerators[0].guest_accelerator_type == "nvidia-l4"
    table = [{"name": "c9-huge-8", "guestCpus": 8, "memoryMb": 65536, "zones": ["us-east1-b"]}]
    with GceFake(machine_types=table) as custom:
        mine = make_clients(custom)
        got = mine.machine_types.get(project=P, zone="us-east1-b", machine_type="c9-huge-8")
        assert (got.guest_cpus, got.zone) == (8, "us-east1-b")
        with pytest.raises(gexc.NotFound):
            mine.machine_types.get(project=P, zone=Z, machine_type="c9-huge-8")
        with pytest.raises(gexc.BadRequest):
            insert(mine, resource("x", machine="e2-small"))


# ------------------------------------------------ protection and slow boots


def test_a_protected_instance_refuses_delete_until_unprotected(clients: GceClients) -> None:
    wait(clients, insert(clients, resource("keep")))

    def protection(value: bool) -> None:
        request = compute_v1.SetDeletionProtectionInstanceRequest(
            project=P, zone=Z, resource="keep", deletion_protection=value
        )
        wait(clients, clients.instances.set_deletion_protection(request=request))

    protection(True)
    assert clients.instances.get(project=P, zone=Z, instance="keep").deletion_protection
    with pytest.raises(gexc.BadRequest) as err:
        clients.instances.delete(project=P, zone=Z, instance="keep")
    assert err.value.errors[0]["reason"] == "invalidResourceUsage"
    assert "protected against deletion" in err.value.message
    protection(False)
    wait(clients, clients.instances.delete(project=P, zone=Z, instance="keep"))
    assert names(clients) == []


def test_held_instances_stay_staging_until_released(fake: GceFake, clients: GceClients) -> None:
    fake.hold_provisioning()
    done = wait(clients, bulk(clients, names=["slow-0", "slow-1"]))
    assert not done.error.errors, "the operation completes; the boot does not"
    time.sleep(0.3)
    listed = clients.instances.list(project=P, zone=Z)
    assert {(i.name, i.status) for i in listed} == {("slow-0", "STAGING"), ("slow-1", "STAGING")}
    fake.release_provisioning()
    time.sleep(0.3)
    listed = clients.instances.list(project=P, zone=Z)
    assert {i.status for i in listed} == {"RUNNING"}


# ------------------------------------------------------- capacity and quota


def test_quota_exceeded_shows_on_the_operation(fake: GceFake, clients: GceClients) -> None:
    fake.set_quota(cpus=4)
    wait(clients, insert(clients, resource("q-0")))
    wait(clients, insert(clients, resource("q-1")))
    op = insert(clients, resource("q-2"))
    assert op.status != compute_v1.Operation.Status.DONE  # the answer itself is a 200
    done = wait(clients, op)
    assert done.error.errors[0].code == "QUOTA_EXCEEDED"
    assert (
        done.error.errors[0].message == "Quota 'CPUS' exceeded.  Limit: 4.0 in region us-central1."
    )
    assert (done.http_error_status_code, done.http_error_message) == (403, "FORBIDDEN")
    with pytest.raises(gexc.NotFound):
        clients.instances.get(project=P, zone=Z, instance="q-2")
    # a TERMINATED instance holds no CPU quota
    wait(clients, clients.instances.stop(project=P, zone=Z, instance="q-0"))
    assert not wait(clients, insert(clients, resource("q-2"))).error.errors


def test_exhausted_zone_shows_on_the_operation(fake: GceFake, clients: GceClients) -> None:
    fake.exhaust_zone(Z)
    done = wait(clients, insert(clients, resource("z-0")))
    assert done.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert f"The zone 'projects/{P}/zones/{Z}' does not have enough resources" in (
        done.error.errors[0].message
    )
    assert done.http_error_status_code == 503
    other = "us-central1-b"
    ok = wait(clients, insert(clients, resource("z-0", zone=other), zone=other), zone=other)
    assert not ok.error.errors
    fake.exhaust_zone(Z, exhausted=False)
    assert not wait(clients, insert(clients, resource("z-1"))).error.errors


# ------------------------------------------------------------- error shapes


def test_errors_have_the_google_shape(clients: GceClients) -> None:
    with pytest.raises(gexc.NotFound) as missing:
        clients.instances.get(project=P, zone=Z, instance="nope")
    assert missing.value.errors[0] == {
        "message": f"The resource 'projects/{P}/zones/{Z}/instances/nope' was not found",
        "domain": "global",
        "reason": "notFound",
    }
    wait(clients, insert(clients, resource("dup")))
    with pytest.raises(gexc.Conflict) as dup:
        insert(clients, resource("dup"))
    assert dup.value.errors[0]["reason"] == "alreadyExists"
    with pytest.raises(gexc.BadRequest) as bad_name:
        insert(clients, resource("Bad_Name"))
    assert bad_name.value.errors[0]["reason"] == "invalid"
    with pytest.raises(gexc.BadRequest) as bad_type:
        insert(clients, resource("x", machine="e9-giant"))
    assert "Machine type with name 'e9-giant' does not exist in zone" in bad_type.value.message
    with pytest.raises(gexc.BadRequest) as bad_image:
        insert(clients, resource("x", image="projects/debian-cloud/global/images/family/nope"))
    assert "sourceImage" in bad_image.value.message
    short = resource("x")
    short.machine_type = "e2-small"  # insert wants a (partial) URL, bulkInsert a name
    with pytest.raises(gexc.BadRequest):
        insert(clients, short)
    gpu = resource("gpu", machine="g2-standard-4")
    with pytest.raises(gexc.BadRequest) as migrate:
        insert(clients, gpu)
    assert "do not support live migration" in migrate.value.message
    gpu.scheduling = compute_v1.Scheduling(on_host_maintenance="TERMINATE")
    assert not wait(clients, insert(clients, gpu)).error.errors
    with pytest.raises(gexc.NotFound):
        clients.instances.list(project=P, zone="mars-north1-a")


# ----------------------------------------------------------------- faults


def test_429_burst_is_raised_and_503_burst_is_retried(fake: GceFake, clients: GceClients) -> None:
    fake.faults.fail(429, count=1, method="POST", path=r"/instances$")
    with pytest.raises(gexc.TooManyRequests):
        insert(clients, resource("t-0"))
    assert names(clients) == []
    wait(clients, insert(clients, resource("t-0")))
    fake.faults.fail(503, count=2, method="GET", path=r"/instances/t-0$")
    assert clients.instances.get(project=P, zone=Z, instance="t-0").name == "t-0"
    assert fake.requests["GET fault"] == 2
    assert fake.requests["GET instances.get"] == 1


def test_dropped_response_after_commit_then_retry(fake: GceFake, clients: GceClients) -> None:
    fake.faults.drop_responses(count=1, path=r"/instances$")
    rid = str(uuid.uuid4())
    with pytest.raises(requests.exceptions.ConnectionError):
        insert(clients, resource("lost"), rid=rid)
    created = fake.instance("lost", zone=Z)
    assert created is not None
    retried = insert(clients, resource("lost"), rid=rid)
    assert retried.target_id == int(created["id"])
    assert len(fake.instances()) == 1
    assert fake.count("instances.insert") == 2


def test_bearer_token_is_required_when_configured() -> None:
    from google.auth.exceptions import GoogleAuthError
    from google.oauth2.credentials import Credentials

    with GceFake(token="s3cret", operation_delay=0, transition_delay=0) as fake:
        good = make_clients(fake, Credentials("s3cret"))
        assert list(good.instances.list(project=P, zone=Z)) == []
        for creds in (None, Credentials("wrong")):
            # on a 401 the SDK's AuthorizedSession tries to refresh and gives up
            with pytest.raises(GoogleAuthError):
                list(make_clients(fake, creds).instances.list(project=P, zone=Z))
