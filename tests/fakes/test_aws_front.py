"""The EC2 front before moto_server, driven by a plain boto3 client.

botocore's own retries are off (``total_max_attempts=1``) so each test sees
exactly what the front answered.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from vmkit.testing.fakes.aws import AwsFront, aws_front, simulated_aws_server
from vmkit.testing.faults import FaultPlan
from vmkit.testing.sim import amazon_linux_image

AMAZON = "137112412989"


@pytest.fixture(scope="module")
def plan() -> FaultPlan:
    return FaultPlan(seed=7)


@pytest.fixture(scope="module")
def front(plan: FaultPlan) -> Iterator[AwsFront]:
    with aws_front(faults=plan) as running:
        yield running


@pytest.fixture
def ec2(front: AwsFront, plan: FaultPlan) -> Iterator[Any]:
    plan.clear()
    yield client(front, "ec2")
    plan.clear()
    front.limit_capacity(None)
    front.release_boot()


@pytest.fixture(scope="module")
def image(front: AwsFront) -> str:
    return str(amazon_linux_image(client(front, "ec2"))["ImageId"])


def client(front: AwsFront, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=front.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def all_instance_ids(ec2: Any) -> set[str]:
    reservations = ec2.describe_instances()["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"]}


def launch(ec2: Any, image: str, token: str, count: int = 2, kind: str = "t3.micro") -> Any:
    return ec2.run_instances(
        ImageId=image, MinCount=count, MaxCount=count, InstanceType=kind, ClientToken=token
    )


def test_same_token_twice_returns_the_same_reservation(ec2: Any, image: str) -> None:
    before = all_instance_ids(ec2)
    first = launch(ec2, image, "same-token")
    ec2.stop_instances(InstanceIds=[first["Instances"][0]["InstanceId"]])
    again = launch(ec2, image, "same-token")

    assert again["ReservationId"] == first["ReservationId"]
    ids = [i["InstanceId"] for i in first["Instances"]]
    assert [i["InstanceId"] for i in again["Instances"]] == ids
    # The repeated answer shows the instances as they are now, not as launched.
    states = {i["InstanceId"]: i["State"]["Name"] for i in again["Instances"]}
    assert states[ids[0]] in {"stopping", "stopped"}
    assert all_instance_ids(ec2) - before == set(ids)


def test_a_new_token_launches_anew(ec2: Any, image: str) -> None:
    first = launch(ec2, image, "token-a", count=1)
    second = launch(ec2, image, "token-b", count=1)
    assert first["ReservationId"] != second["ReservationId"]


def test_same_token_other_parameters_is_a_mismatch(ec2: Any, image: str) -> None:
    launch(ec2, image, "mismatch-token", count=1)
    before = all_instance_ids(ec2)
    with pytest.raises(ClientError) as caught:
        launch(ec2, image, "mismatch-token", count=1, kind="t3.small")
    assert caught.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert all_instance_ids(ec2) == before


def test_a_dropped_answer_commits_and_the_retry_gets_the_same_reservation(
    ec2: Any, image: str, front: AwsFront, plan: FaultPlan
) -> None:
    before = all_instance_ids(ec2)
    rule = plan.drop_responses(count=1, path="RunInstances")
    with pytest.raises(ConnectionClosedError):
        launch(ec2, image, "dropped-token", count=3)
    assert rule.fired == 1
    committed = all_instance_ids(ec2) - before
    assert len(committed) == 3  # moto did launch them; only the answer was lost

    again = launch(ec2, image, "dropped-token", count=3)
    assert again["ReservationId"] == front.reservation_of("dropped-token")
    assert {i["InstanceId"] for i in again["Instances"]} == committed
    assert all_instance_ids(ec2) - before == committed


def test_throttling_burst_is_ec2s_xml_error(ec2: Any, front: AwsFront, plan: FaultPlan) -> None:
    plan.fail(503, count=2, path="/ec2/DescribeVpcs")
    before = front.count("ec2:DescribeVpcs")
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            ec2.describe_vpcs()
        assert caught.value.response["Error"]["Code"] == "RequestLimitExceeded"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert ec2.describe_vpcs()["Vpcs"]
    assert front.count("ec2:DescribeVpcs") - before == 3


def test_internal_error_and_the_chosen_code(ec2: Any, plan: FaultPlan) -> None:
    plan.fail(500, count=1, path="DescribeSubnets")
    with pytest.raises(ClientError) as caught:
        ec2.describe_subnets()
    assert caught.value.response["Error"]["Code"] == "InternalError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_json_services_get_their_own_error_shape(front: AwsFront, plan: FaultPlan) -> None:
    plan.clear()
    ssm = client(front, "ssm")
    plan.fail(503, count=1, path="^/ssm/GetParameter$")
    name = "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
    with pytest.raises(ClientError) as caught:
        ssm.get_parameter(Name=name)
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    # The seeded public parameter resolves through the front afterwards.
    assert ssm.get_parameter(Name=name)["Parameter"]["Value"].startswith("ami-")


def test_faults_pick_actions_not_the_shared_path(ec2: Any, image: str, plan: FaultPlan) -> None:
    plan.fail(503, count=None, path="RunInstances")
    assert ec2.describe_vpcs()["Vpcs"]  # other actions pass
    with pytest.raises(ClientError):
        launch(ec2, image, "never-launched", count=1)


def test_a_reset_before_handling_commits_nothing(
    ec2: Any, image: str, front: AwsFront, plan: FaultPlan
) -> None:
    before = all_instance_ids(ec2)
    plan.reset(count=1, path="RunInstances")
    with pytest.raises(ConnectionClosedError):
        launch(ec2, image, "reset-token", count=1)
    assert all_instance_ids(ec2) == before
    assert front.reservation_of("reset-token") is None


def test_requests_are_counted_by_action(ec2: Any, front: AwsFront) -> None:
    replays, runs = front.replays, front.count("ec2:RunInstances")
    ec2.describe_availability_zones()
    assert front.count("ec2:DescribeAvailabilityZones") >= 1
    assert front.replays == replays
    assert front.count("ec2:RunInstances") == runs


def running(ec2: Any) -> int:
    """Instances holding capacity, as the front counts them."""
    filters = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping"]}]
    return sum(len(r["Instances"]) for r in ec2.describe_instances(Filters=filters)["Reservations"])


def launch_between(ec2: Any, image: str, token: str, least: int, most: int) -> Any:
    return ec2.run_instances(
        ImageId=image, MinCount=least, MaxCount=most, InstanceType="t3.micro", ClientToken=token
    )


def test_max_count_is_launched_when_capacity_allows(ec2: Any, image: str) -> None:
    # moto alone would launch MinCount (1) instances.
    answer = launch_between(ec2, image, "roomy-token", 1, 4)
    assert len(answer["Instances"]) == 4


def test_a_short_zone_launches_what_fits_above_min_count(
    ec2: Any, image: str, front: AwsFront
) -> None:
    front.limit_capacity(running(ec2) + 3)
    answer = launch_between(ec2, image, "short-token", 1, 5)
    assert len(answer["Instances"]) == 3
    # The same token answers the same three, and launches nothing more.
    again = launch_between(ec2, image, "short-token", 1, 5)
    assert [i["InstanceId"] for i in again["Instances"]] == [
        i["InstanceId"] for i in answer["Instances"]
    ]
    assert running(ec2) == front.capacity


def test_below_min_count_nothing_is_launched(ec2: Any, image: str, front: AwsFront) -> None:
    front.limit_capacity(running(ec2) + 2)
    before = all_instance_ids(ec2)
    with pytest.raises(ClientError) as caught:
        launch_between(ec2, image, "full-token", 3, 3)
    assert caught.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert all_instance_ids(ec2) == before
    # A refused launch is not remembered: the same token launches once room is made.
    front.limit_capacity(None)
    assert len(launch_between(ec2, image, "full-token", 3, 3)["Instances"]) == 3


def test_termination_protection_spares_the_whole_zone(ec2: Any, image: str) -> None:
    ids = [i["InstanceId"] for i in launch(ec2, image, "protected-token", count=3)["Instances"]]
    ec2.modify_instance_attribute(InstanceId=ids[1], DisableApiTermination={"Value": True})
    with pytest.raises(ClientError) as caught:
        ec2.terminate_instances(InstanceIds=ids)
    assert caught.value.response["Error"]["Code"] == "OperationNotPermitted"
    assert ids[1] in caught.value.response["Error"]["Message"]

    def states() -> list[str]:
        reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
        found = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
        return [found[i] for i in ids]

    # All three are in one zone: EC2 terminates none of them (moto alone
    # would have terminated the first).
    assert states() == ["running"] * 3
    ec2.modify_instance_attribute(InstanceId=ids[1], DisableApiTermination={"Value": False})
    ec2.terminate_instances(InstanceIds=ids)
    assert states() == ["terminated"] * 3


def test_held_instances_stay_pending_until_released(ec2: Any, image: str, front: AwsFront) -> None:
    earlier = launch(ec2, image, "before-hold-token", count=1)["Instances"][0]["InstanceId"]
    front.hold_boot()
    held = [i["InstanceId"] for i in launch(ec2, image, "held-token", count=2)["Instances"]]

    def state(instance_id: str) -> str:
        (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return str(reservation["Instances"][0]["State"]["Name"])

    assert [state(i) for i in held] == ["pending", "pending"]
    assert state(earlier) == "running"
    replayed = launch(ec2, image, "held-token", count=2)["Instances"]
    assert {i["State"]["Name"] for i in replayed} == {"pending"}
    front.release_boot()
    assert [state(i) for i in held] == ["running", "running"]


def test_answers_number_the_instances_of_a_launch(ec2: Any, image: str, front: AwsFront) -> None:
    launched = launch(ec2, image, "numbered-token", count=3)["Instances"]
    ids = [i["InstanceId"] for i in launched]
    # EC2's Instance.AmiLaunchIndex: 0, 1, 2 in launch order, in both answers.
    assert [i["AmiLaunchIndex"] for i in launched] == [0, 1, 2]
    (reservation,) = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    assert {i["InstanceId"]: i["AmiLaunchIndex"] for i in reservation["Instances"]} == {
        ids[0]: 0,
        ids[1]: 1,
        ids[2]: 2,
    }
    replayed = launch(ec2, image, "numbered-token", count=3)["Instances"]
    assert [i["AmiLaunchIndex"] for i in replayed] == [0, 1, 2]

    front.hide_launch_index()
    try:
        unnumbered = launch(ec2, image, "unnumbered-token", count=2)["Instances"]
        described = ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
    finally:
        front.hide_launch_index(False)
    assert [i.get("AmiLaunchIndex") for i in unnumbered] == [None, None]
    assert [i.get("AmiLaunchIndex") for i in described] == [None, None, None]
    assert len({i["InstanceId"] for i in described}) == 3  # the rest of the answer is whole


def test_a_burst_of_connections_is_not_dropped(front: AwsFront) -> None:
    # 32 clients connect at once: a listen backlog of 5 would drop SYNs and
    # stall some of them for the 1 s of a TCP retransmission.
    from concurrent.futures import ThreadPoolExecutor

    host, port = front.url.removeprefix("http://").split(":")

    def connect(_: int) -> float:
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=5):
            return time.monotonic() - started

    with ThreadPoolExecutor(32) as pool:
        waits = list(pool.map(connect, range(32)))
    assert max(waits) < 0.9, waits


def test_simulated_aws_server_yields_a_connect_config() -> None:
    # Last in the module: moto's backends are per process, so this second
    # server's reset empties the module's front too.
    with simulated_aws_server(region="eu-west-1") as config:
        assert config["region"] == "eu-west-1"
        assert config["endpoint_url"].startswith("http://127.0.0.1:")
        ec2 = boto3.client(
            "ec2",
            endpoint_url=config["endpoint_url"],
            region_name="eu-west-1",
            aws_access_key_id=config["aws_access_key_id"],
            aws_secret_access_key=config["aws_secret_access_key"],
        )
        # A fresh account: no instance, and an unknown AMI is refused as on EC2.
        assert ec2.describe_instances()["Reservations"] == []
        with pytest.raises(ClientError) as caught:
            ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)
        assert caught.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
        image = ec2.describe_images(Owners=[AMAZON])["Images"][0]["ImageId"]
        with pytest.raises(ClientError) as caught:
            ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t9.huge")
        # moto's code for it (EC2 itself answers InvalidParameterValue).
        assert caught.value.response["Error"]["Code"] == "InvalidInstanceType.NotFound"
