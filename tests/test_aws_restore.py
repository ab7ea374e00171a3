"""Restore on EC2 by a root volume replacement task, snapshot records and clones.

The first half checks vmkit's moto extension on its own, through boto3 (the
rules of https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/replace-root.html);
the second half the EC2 backend on top of it: restore, its fallback for
endpoints without the action, a task that fails, snapshots and clones.
"""

from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

import vmkit
from vmkit.providers.aws import AwsProvider
from vmkit.testing.fakes import moto_ext
from vmkit.testing.fakes.aws import simulated_aws_server
from vmkit.testing.sim import amazon_linux_image, simulated_aws

AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservations[0]["Instances"][0])


def root_volume(ec2: Any, instance_id: str) -> str:
    found = instance(ec2, instance_id)
    (mapping,) = [
        m for m in found["BlockDeviceMappings"] if m["DeviceName"] == found["RootDeviceName"]
    ]
    return str(mapping["Ebs"]["VolumeId"])


def volume(ec2: Any, volume_id: str) -> dict[str, Any]:
    return dict(ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0])


def volume_ids(ec2: Any) -> set[str]:
    return {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}


def gone(ec2: Any, volume_id: str) -> bool:
    try:
        ec2.describe_volumes(VolumeIds=[volume_id])
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "InvalidVolume.NotFound"
    return False


def image_snapshot(ec2: Any, image_id: str) -> str:
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    return str(image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


def run_task(ec2: Any, **params: Any) -> list[dict[str, Any]]:
    """Create a task and describe it until it ends; every record seen, in order."""
    seen = [ec2.create_replace_root_volume_task(**params)["ReplaceRootVolumeTask"]]
    task_id = seen[0]["ReplaceRootVolumeTaskId"]
    while seen[-1]["TaskState"] not in ("succeeded", "failed", "failed-detached"):
        assert len(seen) < 10, seen
        answer = ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])
        seen.append(answer["ReplaceRootVolumeTasks"][0])
    return seen


# ------------------------------------------------------- the moto extension


@pytest.fixture
def ec2() -> Iterator[Any]:
    """boto3's EC2 client on a fresh simulated account (the extension installed)."""
    import boto3

    with simulated_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def launch(ec2: Any) -> dict[str, Any]:
    """One instance with an encrypted gp3 root volume, as vmkit launches them."""
    image = amazon_linux_image(ec2)
    launched = ec2.run_instances(
        ImageId=image["ImageId"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=[
            {
                "DeviceName": image["RootDeviceName"],
                "Ebs": {
                    "VolumeSize": 12,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
    )
    return dict(launched["Instances"][0])


def own_snapshot(ec2: Any, instance_id: str) -> str:
    image_id = ec2.create_image(InstanceId=instance_id, Name=f"of-{instance_id}")["ImageId"]
    return image_snapshot(ec2, image_id)


def test_a_task_replaces_the_root_volume_and_deletes_the_old_one(ec2: Any) -> None:
    launched = launch(ec2)
    iid = launched["InstanceId"]
    old = root_volume(ec2, iid)
    snapshot = own_snapshot(ec2, iid)

    seen = run_task(
        ec2,
        InstanceId=iid,
        SnapshotId=snapshot,
        DeleteReplacedRootVolume=True,
        TagSpecifications=[
            {"ResourceType": "replace-root-volume-task", "Tags": [{"Key": "k", "Value": "v"}]}
        ],
    )

    assert [t["TaskState"] for t in seen] == ["pending", "in-progress", "succeeded"]
    done = seen[-1]
    assert done["ReplaceRootVolumeTaskId"].startswith("replacevol-")
    assert len(done["ReplaceRootVolumeTaskId"]) == len("replacevol-") + 17
    assert (done["InstanceId"], done["SnapshotId"]) == (iid, snapshot)
    assert done["DeleteReplacedRootVolume"] is True
    assert tags(done) == {"k": "v"}
    assert done["StartTime"]
    assert done["CompleteTime"]
    after = instance(ec2, iid)
    assert after["State"]["Name"] == "running"
    assert after["PrivateIpAddress"] == launched["PrivateIpAddress"]
    new = root_volume(ec2, iid)
    assert new != old
    made = volume(ec2, new)
    assert made["SnapshotId"] == snapshot
    assert (made["Size"], made["VolumeType"], made["Encrypted"]) == (12, "gp3", True)
    assert made["AvailabilityZone"] == after["Placement"]["AvailabilityZone"]
    (mapping,) = after["BlockDeviceMappings"]
    assert mapping["Ebs"]["DeleteOnTermination"] is True
    assert gone(ec2, old)


def test_the_replaced_volume_is_kept_available_unless_asked_to_delete_it(ec2: Any) -> None:
    iid = launch(ec2)["InstanceId"]
    old = root_volume(ec2, iid)

    seen = run_task(ec2, InstanceId=iid, SnapshotId=own_snapshot(ec2, iid))

    assert seen[-1]["TaskState"] == "succeeded"
    assert seen[-1]["DeleteReplacedRootVolume"] is False
    kept = volume(ec2, old)
    assert kept["State"] == "available"
    assert kept["Attachments"] == []
    assert root_volume(ec2, iid) != old


def test_a_client_token_answers_the_same_task_and_replaces_once(ec2: Any) -> None:
    iid = launch(ec2)["InstanceId"]
    snapshot = own_snapshot(ec2, iid)
    params = {"InstanceId": iid, "SnapshotId": snapshot, "ClientToken": "restore-1"}
    first = run_task(ec2, DeleteReplacedRootVolume=True, **params)[-1]
    replaced = root_volume(ec2, iid)

    again = ec2.create_replace_root_volume_task(DeleteReplacedRootVolume=True, **params)

    assert (
        again["ReplaceRootVolumeTask"]["ReplaceRootVolumeTaskId"]
        == (first["ReplaceRootVolumeTaskId"])
    )
    assert again["ReplaceRootVolumeTask"]["TaskState"] == "succeeded"
    assert root_volume(ec2, iid) == replaced
    with pytest.raises(ClientError, match="IdempotentParameterMismatch"):
        ec2.create_replace_root_volume_task(DeleteReplacedRootVolume=False, **params)
    listed = ec2.describe_replace_root_volume_tasks(
        Filters=[{"Name": "instance-id", "Values": [iid]}]
    )["ReplaceRootVolumeTasks"]
    assert len(listed) == 1


def test_an_unknown_snapshot_is_refused_with_ec2s_code(ec2: Any) -> None:
    iid = launch(ec2)["InstanceId"]
    old = root_volume(ec2, iid)
    with pytest.raises(ClientError) as info:
        ec2.create_replace_root_volume_task(InstanceId=iid, SnapshotId="snap-0123456789abcdef0")
    assert info.value.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
    assert ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"] == []
    assert root_volume(ec2, iid) == old


def test_only_a_running_instance_and_its_own_lineage_are_accepted(ec2: Any) -> None:
    first = launch(ec2)["InstanceId"]
    second = launch(ec2)["InstanceId"]
    foreign = own_snapshot(ec2, first)

    with pytest.raises(ClientError) as info:
        ec2.create_replace_root_volume_task(InstanceId=second, SnapshotId=foreign)
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"

    ec2.stop_instances(InstanceIds=[first])
    with pytest.raises(ClientError) as info:
        ec2.create_replace_root_volume_task(InstanceId=first, SnapshotId=foreign)
    assert info.value.response["Error"]["Code"] == "IncorrectInstanceState"
    assert ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"] == []


def test_an_ami_of_another_instance_replaces_the_root_and_the_image(ec2: Any) -> None:
    first = launch(ec2)["InstanceId"]
    second = launch(ec2)["InstanceId"]
    image_id = ec2.create_image(InstanceId=first, Name="golden")["ImageId"]

    seen = run_task(ec2, InstanceId=second, ImageId=image_id, DeleteReplacedRootVolume=True)

    assert seen[-1]["TaskState"] == "succeeded"
    assert seen[-1]["ImageId"] == image_id
    assert instance(ec2, second)["ImageId"] == image_id
    made = volume(ec2, root_volume(ec2, second))
    assert made["SnapshotId"] == image_snapshot(ec2, image_id)
    # The larger of the AMI's root size (moto's 15 GiB) and the instance's 12.
    assert made["Size"] == 15


@pytest.mark.parametrize("state", ["failed", "failed-detached"])
def test_the_fault_hook_fails_a_task_without_leaving_a_volume(ec2: Any, state: str) -> None:
    iid = launch(ec2)["InstanceId"]
    old = root_volume(ec2, iid)
    snapshot = own_snapshot(ec2, iid)
    before = volume_ids(ec2)

    moto_ext.fail_next_task(state)
    seen = run_task(ec2, InstanceId=iid, SnapshotId=snapshot, DeleteReplacedRootVolume=True)

    assert [t["TaskState"] for t in seen] == ["pending", "failing", state]
    assert volume_ids(ec2) == before, "no replacement volume is left, the old one is kept"
    mappings = instance(ec2, iid)["BlockDeviceMappings"]
    if state == "failed":
        assert root_volume(ec2, iid) == old
    else:
        assert mappings == []
        assert volume(ec2, old)["State"] == "available"
    # The hook fired once: the next task succeeds.
    if state == "failed":
        assert run_task(ec2, InstanceId=iid, SnapshotId=snapshot)[-1]["TaskState"] == "succeeded"


def test_install_is_idempotent_and_uninstalled_is_moto_without_it(ec2: Any) -> None:
    moto_ext.install()
    moto_ext.install()
    assert moto_ext.installed()
    with moto_ext.uninstalled():
        assert not moto_ext.installed()
        with pytest.raises(NotImplementedError):
            ec2.describe_replace_root_volume_tasks()
    assert moto_ext.installed()
    assert ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"] == []


def test_moto_server_answers_in_ec2s_xml() -> None:
    import boto3

    bodies: dict[str, ET.Element] = {}

    def keep(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        # botocore's "before-parse" event carries the raw answer (botocore/endpoint.py).
        bodies[operation_model.name] = ET.fromstring(response_dict["body"])

    with simulated_aws_server() as config:
        ec2 = boto3.client(
            "ec2",
            region_name="us-east-1",
            endpoint_url=config["endpoint_url"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for action in ("CreateReplaceRootVolumeTask", "DescribeReplaceRootVolumeTasks"):
            ec2.meta.events.register(f"before-parse.ec2.{action}", keep)
        iid = launch(ec2)["InstanceId"]
        seen = run_task(ec2, InstanceId=iid, SnapshotId=own_snapshot(ec2, iid))

    assert seen[-1]["TaskState"] == "succeeded"
    # moto writes EC2's namespace without its trailing slash: names are compared
    # without it.
    created = plain(bodies["CreateReplaceRootVolumeTask"])
    assert created.tag == "CreateReplaceRootVolumeTaskResponse"
    task = created.find("replaceRootVolumeTask")
    assert task is not None
    assert task.findtext("taskState") == "pending"
    assert task.findtext("instanceId") == iid
    assert task.findtext("deleteReplacedRootVolume") == "false"
    assert (task.findtext("replaceRootVolumeTaskId") or "").startswith("replacevol-")
    described = plain(bodies["DescribeReplaceRootVolumeTasks"])
    items = described.findall("replaceRootVolumeTaskSet/item")
    assert [i.findtext("taskState") for i in items] == ["succeeded"]
    assert items[0].findtext("completeTime")


def plain(element: ET.Element) -> ET.Element:
    """``element`` with the namespace taken off every tag."""
    for node in element.iter():
        node.tag = node.tag.rsplit("}", 1)[-1]
    return element


# ------------------------------------------------------------ the EC2 backend


def workload(name: str, replicas: int = 1, **fields: Any) -> vmkit.Workload:
    return vmkit.Workload(name=name, replicas=replicas, image="nginx:1.27", **fields)


def test_restore_is_a_root_volume_replacement_from_the_snapshot(aws: AwsProvider) -> None:
    ec2 = aws.ec2_client
    (machine,) = aws.deploy(workload("db", labels={"team": "data"}))
    snap = machine.snapshot("v1")
    # What happens to the disk after the snapshot: marked on the volume.
    old = root_volume(ec2, machine.id)
    ec2.create_tags(Resources=[old], Tags=[{"Key": "written", "Value": "after-snapshot"}])

    restored = machine.restore(snap)

    kept = ("id", "name", "replica", "workload", "labels", "private_ip", "public_ip")
    assert [getattr(restored, f) for f in kept] == [getattr(machine, f) for f in kept]
    assert restored.state == vmkit.MachineState.RUNNING
    new = root_volume(ec2, machine.id)
    assert new != old
    assert gone(ec2, old)
    made = volume(ec2, new)
    assert made["SnapshotId"] == image_snapshot(ec2, snap.id)
    assert made["Encrypted"] is True
    assert tags(made)["vmkit-workload"] == "db"
    assert tags(instance(ec2, machine.id)) == tags(machine.raw)
    (task,) = ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"]
    assert (task["SnapshotId"], task["DeleteReplacedRootVolume"]) == (made["SnapshotId"], True)
    assert tags(task) == {"vmkit-workload": "db", "vmkit-machine": machine.id}
    assert aws.api_calls["ec2:CreateReplaceRootVolumeTask"] == 1
    assert aws.api_calls["ec2:StopInstances"] == 0
    assert aws.api_calls["ec2:StartInstances"] == 0
    assert not aws.plan(workload("db", labels={"team": "data"})).changes


def test_a_stopped_machine_is_started_then_restored(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("cold"))
    snap = machine.snapshot("v1")
    old = root_volume(aws.ec2_client, machine.id)
    machine.stop()

    restored = machine.restore(snap)

    assert restored.state == vmkit.MachineState.RUNNING
    assert root_volume(aws.ec2_client, machine.id) != old
    assert aws.api_calls["ec2:StartInstances"] == 1
    assert aws.api_calls["ec2:CreateReplaceRootVolumeTask"] == 1


def test_without_the_action_restore_falls_back_to_a_swap(
    aws: AwsProvider, caplog: pytest.LogCaptureFixture
) -> None:
    ec2 = aws.ec2_client
    (machine,) = aws.deploy(workload("old", labels={"team": "data"}))
    snap = machine.snapshot("v1")
    old = root_volume(ec2, machine.id)

    with moto_ext.uninstalled(), caplog.at_level(logging.WARNING, "vmkit.providers.aws"):
        restored = machine.restore(snap)

    assert "no root volume replacement" in caplog.text
    assert (restored.id, restored.name, restored.labels) == (machine.id, "old-0", {"team": "data"})
    assert restored.state == vmkit.MachineState.RUNNING
    new = root_volume(ec2, machine.id)
    assert volume(ec2, new)["SnapshotId"] == image_snapshot(ec2, snap.id)
    assert gone(ec2, old)
    assert volume_ids(ec2) == {new}, "no extra volume is left"
    assert aws.api_calls["ec2:CreateReplaceRootVolumeTask"] == 0
    assert aws.api_calls["ec2:StopInstances"] == aws.api_calls["ec2:StartInstances"] == 1


def test_a_failed_task_keeps_the_old_root_volume_and_names_the_machine(aws: AwsProvider) -> None:
    ec2 = aws.ec2_client
    (machine,) = aws.deploy(workload("flaky"))
    snap = machine.snapshot("v1")
    old = root_volume(ec2, machine.id)
    before = volume_ids(ec2)

    moto_ext.fail_next_task()
    with pytest.raises(vmkit.ProviderError) as info:
        machine.restore(snap)

    message = str(info.value)
    assert "flaky-0" in message
    assert machine.id in message
    assert "ended failed" in message
    assert old in message
    assert root_volume(ec2, machine.id) == old
    assert volume_ids(ec2) == before
    assert machine.refresh().state == vmkit.MachineState.RUNNING


def test_a_task_failed_detached_says_where_the_old_volume_is(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("lost"))
    snap = machine.snapshot("v1")
    old = root_volume(aws.ec2_client, machine.id)

    moto_ext.fail_next_task("failed-detached")
    with pytest.raises(vmkit.ProviderError, match="ended failed-detached") as info:
        machine.restore(snap)

    assert old in str(info.value)
    assert volume(aws.ec2_client, old)["State"] == "available"


def test_gc_keeps_the_old_volume_of_a_machine_left_without_a_root(aws: AwsProvider) -> None:
    from moto.ec2.models import ec2_backends

    (machine,) = aws.deploy(workload("stranded"))
    snap = machine.snapshot("v1")
    old = root_volume(aws.ec2_client, machine.id)
    moto_ext.fail_next_task("failed-detached")
    with pytest.raises(vmkit.ProviderError):
        machine.restore(snap)
    # Long after: older than a restore in flight could be.
    account = aws.ec2_client.describe_vpcs()["Vpcs"][0]["OwnerId"]
    record = ec2_backends[account]["us-east-1"].volumes[old]
    record.create_time -= timedelta(minutes=11)
    assert old not in [o.id for o in aws.gc("stranded", dry_run=True)]
    aws.gc("stranded")
    assert volume(aws.ec2_client, old)["State"] == "available", "its only copy is kept"


def test_restore_from_an_image_vmkit_did_not_make_changes_nothing(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("safe"))
    snap = machine.snapshot("v1")
    public = aws.ssm_client.get_parameter(Name=AL2023)["Parameter"]["Value"]
    calls = dict(aws.api_calls)

    for image_id in (public, "ami-0123456789abcdef0"):
        with pytest.raises(vmkit.NotFound, match=image_id):
            machine.restore(dataclasses.replace(snap, id=image_id))

    made = {k for k, v in aws.api_calls.items() if v != calls.get(k, 0)}
    assert made == {"ec2:DescribeInstances", "ec2:DescribeImages"}, made


def test_a_snapshot_records_its_size_replica_and_machine(aws: AwsProvider) -> None:
    ec2 = aws.ec2_client
    machine = aws.deploy(workload("rec", replicas=2))[1]

    snap = machine.snapshot("nightly")

    (image,) = ec2.describe_images(ImageIds=[snap.id])["Images"]
    root_size = image["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    assert (snap.size, snap.replica, snap.machine, snap.workload) == (
        root_size,
        1,
        machine.id,
        "rec",
    )
    (listed,) = aws.snapshots("rec")
    assert (listed.size, listed.replica) == (root_size, 1)
    owned = {"vmkit-workload": "rec", "vmkit-replica": "1", "vmkit-machine": machine.id}
    assert owned.items() <= tags(image).items()
    (ebs,) = ec2.describe_snapshots(SnapshotIds=[image_snapshot(ec2, snap.id)])["Snapshots"]
    assert owned.items() <= tags(ebs).items()


def test_a_clone_of_a_snapshot_runs_it_and_restores_to_it(aws: AwsProvider) -> None:
    (origin,) = aws.deploy(workload("golden"))
    snap = origin.snapshot("base")

    clones = aws.deploy(workload("clone", replicas=2, os_image=snap.id))

    assert [(m.replica, m.state, m.image) for m in clones] == [
        (0, vmkit.MachineState.RUNNING, snap.id),
        (1, vmkit.MachineState.RUNNING, snap.id),
    ]
    assert origin.id not in {m.id for m in clones}
    # A clone's disk did not come from the snapshot's lineage: EC2 takes the AMI.
    old = root_volume(aws.ec2_client, clones[0].id)
    restored = clones[0].restore(snap)
    assert restored.state == vmkit.MachineState.RUNNING
    (task,) = aws.ec2_client.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"]
    assert task["ImageId"] == snap.id
    assert "SnapshotId" not in task
    assert gone(aws.ec2_client, old)


def test_a_clone_of_a_missing_image_fails_naming_os_image_before_any_change(
    aws: AwsProvider,
) -> None:
    spec = workload("ghost", replicas=2, os_image="ami-0123456789abcdef0")
    with pytest.raises(vmkit.SpecError) as planned:
        aws.plan(spec)
    assert planned.value.field == "os_image"
    with pytest.raises(vmkit.SpecError, match="ami-0123456789abcdef0") as deployed:
        aws.deploy(spec)
    assert deployed.value.field == "os_image"
    assert aws.api_calls["ec2:RunInstances"] == 0
    assert aws.api_calls["ec2:CreateSecurityGroup"] == 0


def test_a_vm_isolation_workload_is_tagged_with_it(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("iso", isolation="vm"))
    assert tags(instance(aws.ec2_client, machine.id))["vmkit-isolation"] == "vm"
    (plain,) = aws.deploy(workload("plain"))
    assert "vmkit-isolation" not in tags(instance(aws.ec2_client, plain.id))


def test_a_lost_answer_to_the_task_is_retried_with_its_client_token() -> None:
    from vmkit.testing.faults import FaultPlan

    faults = FaultPlan(seed=9)
    with simulated_aws_server(faults=faults) as config:
        aws = vmkit.connect("aws", **config)
        (machine,) = aws.deploy(workload("retry"))
        snap = machine.snapshot("v1")
        lost = faults.drop_responses(count=1, path="^/ec2/CreateReplaceRootVolumeTask$")

        restored = machine.restore(snap)

        assert lost.fired == 1
        assert restored.state == vmkit.MachineState.RUNNING
        tasks = aws.ec2_client.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"]
        assert [t["TaskState"] for t in tasks] == ["succeeded"], "one task for two requests"
        assert aws.api_calls["ec2:CreateReplaceRootVolumeTask"] == 2
        assert len(aws.ec2_client.describe_volumes()["Volumes"]) == 1


def test_a_moto_server_without_the_action_gets_the_swap() -> None:
    # moto's server answers an action it lacks with an HTML page (HTTP 500).
    with simulated_aws_server() as config, moto_ext.uninstalled():
        aws = vmkit.connect("aws", **config)
        (machine,) = aws.deploy(workload("served"))
        snap = machine.snapshot("v1")
        old = root_volume(aws.ec2_client, machine.id)

        restored = machine.restore(snap)

        assert restored.state == vmkit.MachineState.RUNNING
        new = root_volume(aws.ec2_client, machine.id)
        assert volume_ids(aws.ec2_client) == {new}
        assert new != old
        assert aws.api_calls["ec2:DescribeReplaceRootVolumeTasks"] == 1
        assert aws.api_calls["ec2:CreateReplaceRootVolumeTask"] == 0


def test_a_clone_gets_a_root_volume_its_snapshot_fits_in(aws: AwsProvider) -> None:
    # EC2 refuses a launch whose root volume is smaller than the AMI's root
    # snapshot (InvalidBlockDeviceMapping "Volume of size 8GB is smaller than
    # snapshot 'snap-...', expect size >= 15GB"), which moto does not check:
    # the clone's root volume takes the snapshot's size when the spec asks less.
    (origin,) = aws.deploy(workload("big"))
    snap = origin.snapshot("base")
    assert snap.size is not None
    assert snap.size > 8

    spec = workload("small", replicas=2, os_image=snap.id, resources=vmkit.Resources(disk="8GiB"))
    (request,) = aws.plan(spec).requests
    (mapping,) = request.body["BlockDeviceMappings"]
    assert mapping["Ebs"]["VolumeSize"] == snap.size

    clones = aws.deploy(spec)
    sizes = {volume(aws.ec2_client, root_volume(aws.ec2_client, m.id))["Size"] for m in clones}
    assert sizes == {snap.size}
    # A spec that asks for more than the snapshot holds keeps its own size.
    roomy = workload("roomy", os_image=snap.id, resources=vmkit.Resources(disk="64GiB"))
    (request,) = aws.plan(roomy).requests
    assert request.body["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 64


def test_a_swap_that_fails_puts_the_machine_back_running_on_its_old_volume() -> None:
    # The fallback's undo: the old root volume goes back, the new one is
    # deleted, and the machine it stopped runs again, as on GCE and Azure.
    from vmkit.testing.fakes.aws import aws_front
    from vmkit.testing.faults import FaultPlan

    faults = FaultPlan()
    with aws_front(faults=faults, fault_codes={400: "IncorrectState"}) as front:
        aws = vmkit.connect("aws", **front.config())
        (machine,) = aws.deploy(workload("undo"))
        snap = machine.snapshot("v1")
        old = root_volume(aws.ec2_client, machine.id)
        refused = faults.fail(400, count=1, path="^/ec2/AttachVolume$")

        with moto_ext.uninstalled(), pytest.raises(vmkit.ProviderError, match="IncorrectState"):
            machine.restore(snap)

        assert refused.fired == 1
        assert root_volume(aws.ec2_client, machine.id) == old
        assert volume_ids(aws.ec2_client) == {old}, "the new volume is deleted"
        assert machine.refresh().state == vmkit.MachineState.RUNNING
