"""What is specific to the EC2 backend, against moto (tests/test_aws_conformance.py
runs the shared semantics).

Faults are injected through botocore's public event system: a handler on
``before-call.ec2.<Operation>`` that returns ``(http_response, parsed)``
answers the call itself, so the request is never sent and moto never sees it
(botocore/client.py, ``_make_api_call``; events guide:
https://boto3.amazonaws.com/v1/documentation/api/latest/guide/events.html).
A ``before-send`` handler would not do: every before-send handler runs, so
moto would still carry the request out behind the injected answer.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, SSLError

import vmkit
from vmkit.catalog import resolve_instance_type
from vmkit.providers.aws import AwsProvider
from vmkit.providers.aws.errors import AwsErrors
from vmkit.render import render_cloud_init

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0k7OBQjG0l8eW2C/cjV3ZY7H1k6N5kpT0mh1p8W0m me@host"
OTHER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5pbmV0ZWVuc2l4dHlmb3VyZm9ydHl0d29zaXh0ZWVu you@host"
)
SECRET = "sEcReT-vmkit-never-printed"


# ------------------------------------------------------------------ helpers


Answer = tuple[AWSResponse, dict[str, Any]]


class _Body:
    def __init__(self, body: bytes = b"") -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def ec2_error(code: str, status: int = 400, message: str = "injected by the test") -> Answer:
    """An EC2 error answer, as botocore's parser would have read it."""
    http = AWSResponse("https://ec2.us-east-1.amazonaws.com/", status, {}, _Body())
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return http, parsed


def ec2_answer(parsed: dict[str, Any]) -> Answer:
    """A successful EC2 answer."""
    http = AWSResponse("https://ec2.us-east-1.amazonaws.com/", 200, {}, _Body())
    return http, {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}}}


class Intercept:
    """Sees the serialized parameters of every call of one operation before it
    is sent; ``answer(n)`` for the n-th call (from 1) returns an answer to use
    instead of sending it, or None to send it."""

    def __init__(
        self,
        client: Any,
        operation: str,
        answer: Callable[[int], Answer | None] = lambda n: None,
    ) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._answer = answer
        client.meta.events.register(f"before-call.ec2.{operation}", self._handler)

    def _handler(self, params: dict[str, Any], **_: Any) -> Answer | None:
        self.bodies.append({k: str(v) for k, v in params["body"].items()})
        return self._answer(len(self.bodies))


def first(*responses: Answer | None) -> Callable[[int], Answer | None]:
    """Answer the first requests with ``responses`` (None: let that one through),
    then let the rest through."""
    return lambda n: responses[n - 1] if n <= len(responses) else None


def always(response: Callable[[], Answer]) -> Callable[[int], Answer | None]:
    return lambda n: response()


def unnumbered(aws: AwsProvider) -> None:
    """Make the RunInstances answers reach ``aws`` without ``AmiLaunchIndex``
    (botocore's public ``after-call`` event, whose handlers may change the
    parsed answer): as from an EC2-compatible endpoint that lacks it."""

    def strip(parsed: dict[str, Any], **_: Any) -> None:
        for item in parsed.get("Instances", []):
            item.pop("AmiLaunchIndex", None)

    aws.ec2_client.meta.events.register("after-call.ec2.RunInstances", strip)


def workload(name: str = "web", replicas: int = 2, **fields: Any) -> vmkit.Workload:
    fields.setdefault("image", "nginx:1.27")
    fields.setdefault("ports", [80])
    return vmkit.Workload(name=name, replicas=replicas, **fields)


def instance(aws: AwsProvider, machine_id: str) -> dict[str, Any]:
    answer = aws.ec2_client.describe_instances(InstanceIds=[machine_id])
    result: dict[str, Any] = answer["Reservations"][0]["Instances"][0]
    return result


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def group_rules(aws: AwsProvider, name: str) -> set[tuple[str, int, str]]:
    groups = aws.ec2_client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    assert len(groups) == 1
    rules = set()
    for perm in groups[0]["IpPermissions"]:
        for item in perm.get("IpRanges", []):
            rules.add((perm["IpProtocol"], perm["FromPort"], item["CidrIp"]))
        for item in perm.get("Ipv6Ranges", []):
            rules.add((perm["IpProtocol"], perm["FromPort"], item["CidrIpv6"]))
        for item in perm.get("UserIdGroupPairs", []):
            rules.add((perm["IpProtocol"], perm["FromPort"], item["GroupId"]))
    return rules


def anywhere(*ports: tuple[str, int]) -> set[tuple[str, int, str]]:
    return {(proto, port, cidr) for proto, port in ports for cidr in ("0.0.0.0/0", "::/0")}


# ------------------------------------------------------------------ connect


def test_connect_needs_a_region(
    aws_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(vmkit.ConfigError, match="region"):
        vmkit.connect("aws")


def test_an_unknown_profile_is_a_config_error(aws_config: dict[str, Any]) -> None:
    with pytest.raises(vmkit.ConfigError, match="nope"):
        vmkit.connect("aws", region="us-east-1", profile="nope")


def test_credentials_status(aws_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert AwsProvider.credentials_status(region="us-east-1") is None
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reason = AwsProvider.credentials_status(region="us-east-1")
    assert reason is not None
    assert "credentials" in reason
    assert (
        AwsProvider.credentials_status(aws_access_key_id="AKIA", aws_secret_access_key="x") is None
    )


def test_no_credentials_is_an_auth_error(
    aws_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    aws = vmkit.connect("aws", **aws_config)
    with pytest.raises(vmkit.AuthError) as info:
        aws.list()
    assert isinstance(info.value.__cause__, NoCredentialsError)
    assert "AWS_ACCESS_KEY_ID" in str(info.value)  # says how to fix it


def test_botocore_does_not_retry_underneath_vmkit(aws: AwsProvider) -> None:
    # botocore's own retries happen around the HTTP send, so the fault goes in
    # at before-send here: the first send gets a 503 (moto still answers the
    # read behind it, which is harmless for a Describe). Each vmkit attempt
    # must be exactly one send.
    sends: list[int] = []

    def unavailable_once(**_: Any) -> AWSResponse | None:
        sends.append(1)
        if len(sends) > 1:
            return None
        body = (
            b"<Response><Errors><Error><Code>Unavailable</Code><Message>busy</Message>"
            b"</Error></Errors><RequestID>test</RequestID></Response>"
        )
        return AWSResponse("https://ec2.us-east-1.amazonaws.com/", 503, {}, _Body(body))

    aws.ec2_client.meta.events.register_first("before-send.ec2.DescribeInstances", unavailable_once)
    aws.list()
    assert aws.api_calls["ec2:DescribeInstances"] == 2
    assert len(sends) == 2


# ------------------------------------------------------------------- create


def test_twenty_replicas_take_one_run_instances_and_no_tagging(aws: AwsProvider) -> None:
    machines = aws.deploy(workload("fleet", replicas=20))
    assert aws.api_calls["ec2:RunInstances"] == 1
    assert "ec2:CreateTags" not in aws.api_calls
    assert [m.replica for m in machines] == list(range(20))
    assert [m.name for m in machines] == [f"fleet-{i}" for i in range(20)]
    reservations = {instance(aws, m.id)["AmiLaunchIndex"]: m.replica for m in machines}
    assert reservations == {i: i for i in range(20)}, "replicas follow AmiLaunchIndex"
    assert [m.name for m in aws.list("fleet")] == [f"fleet-{i}" for i in range(20)]


def test_the_launch_tags_name_the_replicas(aws: AwsProvider) -> None:
    spec = workload("tagged", replicas=2, labels={"team": "infra"})
    machines = aws.deploy(spec)
    for machine in machines:
        found = instance(aws, machine.id)
        assert tags(found) == {
            "Name": "tagged",
            "vmkit-workload": "tagged",
            "vmkit-replicas": "0-1",
            "vmkit-spec": spec.spec_hash,
            "team": "infra",
        }
        assert machine.name == f"tagged-{found['AmiLaunchIndex']}"
        assert machine.labels == {"team": "infra"}
        volume_id = found["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        (volume,) = aws.ec2_client.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        assert tags(volume)["vmkit-replicas"] == "0-1"


def test_missing_replicas_are_launched_under_their_own_indexes(aws: AwsProvider) -> None:
    machines = aws.deploy(workload("gaps", replicas=6))
    gone = [m.id for m in machines if m.replica in (1, 3, 4)]
    aws.ec2_client.terminate_instances(InstanceIds=gone)
    (request,) = aws.plan(workload("gaps", replicas=6)).requests
    assert request.replicas == (1, 3, 4)
    redeployed = aws.deploy(workload("gaps", replicas=6))
    assert [m.name for m in redeployed] == [f"gaps-{i}" for i in range(6)]
    fresh = [m for m in redeployed if m.replica in (1, 3, 4)]
    assert {tags(instance(aws, m.id))["vmkit-replicas"] for m in fresh} == {"1_3-4"}
    assert not aws.plan(workload("gaps", replicas=6)).changes


def test_an_older_per_instance_replica_tag_wins(aws: AwsProvider) -> None:
    # Instances made by an earlier vmkit carry vmkit-replica (and no launch list).
    (machine,) = aws.deploy(workload("old", replicas=1))
    aws.ec2_client.delete_tags(Resources=[machine.id], Tags=[{"Key": "vmkit-replicas"}])
    aws.ec2_client.create_tags(
        Resources=[machine.id], Tags=[{"Key": "vmkit-replica", "Value": "1"}]
    )
    assert [(m.name, m.replica) for m in aws.list("old")] == [("old-1", 1)]
    plan = aws.plan(workload("old", replicas=2))
    assert [(a.kind, a.replica) for a in plan.actions] == [("create", 0), ("keep", 1)]


def test_the_request_is_secure_by_default(aws: AwsProvider) -> None:
    spec = workload("secure", replicas=1, resources={"disk": "30.5GiB"})
    (request,) = aws.plan(spec).requests
    body = request.body
    assert body["MetadataOptions"] == {"HttpTokens": "required", "HttpEndpoint": "enabled"}
    (root,) = body["BlockDeviceMappings"]
    assert root["Ebs"] == {
        "VolumeSize": 31,
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
    }
    assert "InstanceMarketOptions" not in body
    (machine,) = aws.apply(aws.plan(spec))
    found = instance(aws, machine.id)
    assert found["MetadataOptions"]["HttpTokens"] == "required"
    volume_id = found["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    (volume,) = aws.ec2_client.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    assert (volume["Encrypted"], volume["Size"], volume["VolumeType"]) == (True, 31, "gp3")
    assert tags(volume)["vmkit-workload"] == "secure"


def test_spot_requests_a_one_time_spot_instance(aws: AwsProvider) -> None:
    spec = workload("spot", replicas=1, spot=True)
    (request,) = aws.plan(spec).requests
    assert request.body["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        },
    }
    (machine,) = aws.deploy(spec)
    assert instance(aws, machine.id)["InstanceLifecycle"] == "spot"


def test_user_data_reaches_the_instance_encoded_once(aws: AwsProvider) -> None:
    spec = workload("boot", replicas=1, env={"MODE": "prod"})
    (machine,) = aws.deploy(spec)
    answer = aws.ec2_client.describe_instance_attribute(InstanceId=machine.id, Attribute="userData")
    assert base64.b64decode(answer["UserData"]["Value"]).decode() == render_cloud_init(spec)


def test_the_same_client_token_is_resent_on_a_retry(aws: AwsProvider) -> None:
    seen = Intercept(aws.ec2_client, "RunInstances", first(ec2_error("RequestLimitExceeded", 503)))
    plan = aws.plan(workload("retry", replicas=2))
    token = plan.requests[0].body["ClientToken"]
    machines = aws.apply(plan)
    assert aws.api_calls["ec2:RunInstances"] == 2
    assert [b["ClientToken"] for b in seen.bodies] == [token, token]
    assert len(machines) == 2
    # A new deploy call makes a new key: EC2 remembers keys for a day.
    assert aws.plan(workload("retry", replicas=3)).requests[0].body["ClientToken"] != token


def test_without_launch_indexes_each_instance_is_tagged_with_its_replica(
    aws: AwsProvider,
) -> None:
    # An endpoint whose RunInstances answer lacks AmiLaunchIndex: vmkit cannot
    # tell which instance is which replica from the launch, and tags each.
    unnumbered(aws)
    machines = aws.deploy(workload("each", replicas=3))
    assert aws.api_calls["ec2:CreateTags"] == 3
    assert [m.name for m in machines] == ["each-0", "each-1", "each-2"]
    for machine in machines:
        found = tags(instance(aws, machine.id))
        assert (found["vmkit-replica"], found["Name"]) == (str(machine.replica), machine.name)
    assert not aws.plan(workload("each", replicas=3)).changes


def test_an_instance_that_cannot_be_tagged_is_terminated_and_its_replica_reported(
    aws: AwsProvider,
) -> None:
    unnumbered(aws)
    Intercept(aws.ec2_client, "CreateTags", first(None, ec2_error("InvalidParameterValue")))
    with pytest.raises(vmkit.ProviderError, match="InvalidParameterValue") as caught:
        aws.deploy(workload("half", replicas=3))
    (failed,) = caught.value.failed
    kept = aws.list("half")
    # The two tagged replicas stay; the untagged instance is terminated, not left
    # as an orphan no listing finds by replica.
    assert sorted(m.name for m in kept) == sorted({"half-0", "half-1", "half-2"} - {failed})
    assert aws.api_calls["ec2:TerminateInstances"] == 1
    alive = aws.ec2_client.describe_instances(
        Filters=[
            {"Name": "tag:vmkit-workload", "Values": ["half"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    assert sum(len(r["Instances"]) for r in alive) == 2
    assert len(aws.deploy(workload("half", replicas=3))) == 3


def test_a_short_zone_launches_what_fits_after_the_all_or_nothing_request(
    aws: AwsProvider,
) -> None:
    seen = Intercept(
        aws.ec2_client,
        "RunInstances",
        first(ec2_error("InsufficientInstanceCapacity", 500, "no capacity in us-east-1a")),
    )
    plan = aws.plan(workload("short", replicas=3))
    token = plan.requests[0].body["ClientToken"]
    # moto launches MinCount: the second request (MinCount 1) makes one, as
    # EC2 does when it has room for one.
    with pytest.raises(vmkit.QuotaExceeded) as caught:
        aws.apply(plan)
    first_try, second_try = seen.bodies
    assert (first_try["MinCount"], first_try["MaxCount"]) == ("3", "3")
    assert (second_try["MinCount"], second_try["MaxCount"]) == ("1", "3")
    assert first_try["ClientToken"] == token != second_try["ClientToken"]
    reason = caught.value.failed["short-1"]
    assert caught.value.failed == {"short-1": reason, "short-2": reason}
    assert "no capacity in us-east-1a" in reason
    assert "launched 1 of 3" in reason
    assert [m.name for m in aws.list("short")] == ["short-0"]
    assert len(aws.deploy(workload("short", replicas=3))) == 3


def test_plan_makes_read_only_calls_only(aws: AwsProvider) -> None:
    aws.deploy(workload("ro", replicas=1))
    aws.api_calls.clear()
    plan = aws.plan(workload("ro", replicas=3, ssh_public_key=SSH_KEY, ports=[80, 443]))
    assert plan.requests
    operations = {op.split(":")[1] for op in aws.api_calls}
    assert operations
    assert all(op.startswith(("Describe", "Get")) for op in operations), operations


def test_plan_shows_the_body_exactly_as_sent(aws: AwsProvider) -> None:
    seen = Intercept(aws.ec2_client, "RunInstances")
    plan = aws.plan(workload("exact", replicas=2, ssh_public_key=SSH_KEY))
    aws.apply(plan)
    (sent,) = seen.bodies
    body = plan.requests[0].body
    assert sent["ImageId"] == body["ImageId"]
    assert sent["InstanceType"] == body["InstanceType"]
    assert [sent["SecurityGroup.1"]] == ["vmkit-exact"] == body["SecurityGroups"]
    assert sent["KeyName"] == "vmkit-exact" == body["KeyName"]
    assert sent["MinCount"] == sent["MaxCount"] == "2"
    assert sent["ClientToken"] == body["ClientToken"]
    assert sent["MetadataOptions.HttpTokens"] == "required"
    assert sent["BlockDeviceMapping.1.Ebs.Encrypted"] == "true"


# ------------------------------------------------------------- sizes, images


def test_the_live_offerings_limit_the_instance_type(aws: AwsProvider) -> None:
    offering = {"InstanceType": "m7i.large", "LocationType": "region", "Location": "us-east-1"}
    answer = ec2_answer({"InstanceTypeOfferings": [offering]})
    seen = Intercept(aws.ec2_client, "DescribeInstanceTypeOfferings", always(lambda: answer))
    (request,) = aws.plan(workload("sized", replicas=1)).requests
    assert request.body["InstanceType"] == "m7i.large"
    (query,) = seen.bodies
    assert query["LocationType"] == "region"
    assert query["Filter.1.Name"] == "instance-type"


def test_offerings_that_fail_fall_back_to_the_catalog(aws: AwsProvider) -> None:
    Intercept(
        aws.ec2_client,
        "DescribeInstanceTypeOfferings",
        always(lambda: ec2_error("InvalidParameterValue")),
    )
    spec = workload("fallback", replicas=1)
    (request,) = aws.plan(spec).requests
    assert request.body["InstanceType"] == resolve_instance_type("aws", spec.resources).name


def test_offerings_refused_for_auth_raise(aws: AwsProvider) -> None:
    Intercept(
        aws.ec2_client,
        "DescribeInstanceTypeOfferings",
        always(lambda: ec2_error("UnauthorizedOperation", 403)),
    )
    with pytest.raises(vmkit.AuthError):
        aws.plan(workload("denied", replicas=1))


def test_instance_type_option_always_wins(aws: AwsProvider) -> None:
    spec = workload("pinned", replicas=1, options={"aws": {"instance_type": "c7i.large"}})
    (machine,) = aws.deploy(spec)
    assert machine.size == "c7i.large"
    assert "ec2:DescribeInstanceTypeOfferings" not in aws.api_calls


def test_arm64_gets_an_arm_type_and_an_arm_image(aws: AwsProvider) -> None:
    spec = workload("graviton", replicas=1, options={"aws": {"arch": "arm64"}})
    (machine,) = aws.deploy(spec)
    assert machine.size == resolve_instance_type("aws", spec.resources, arch="arm64").name
    (image,) = aws.ec2_client.describe_images(ImageIds=[machine.image])["Images"]
    assert image["Architecture"] == "arm64"
    x86 = aws.deploy(workload("intel", replicas=1))[0]
    (image,) = aws.ec2_client.describe_images(ImageIds=[x86.image])["Images"]
    assert image["Architecture"] == "x86_64"


def test_portable_image_names_resolve_through_ssm(aws: AwsProvider) -> None:
    parameter = "/aws/service/debian/release/12/latest/amd64"
    expected = aws.ssm_client.get_parameter(Name=parameter)["Parameter"]["Value"]
    (request,) = aws.plan(workload("deb", replicas=1, os_image="debian-12")).requests
    assert request.body["ImageId"] == expected
    assert aws.api_calls["ssm:GetParameter"] == 1


def test_a_native_ami_is_used_as_given(aws: AwsProvider) -> None:
    ami = aws.ssm_client.get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    (machine,) = aws.deploy(workload("native", replicas=1, os_image=ami))
    assert machine.image == ami
    assert "ssm:GetParameter" not in aws.api_calls


# --------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"options": {"aws": {"instance_typ": "t3.micro"}}}, "options.aws.instance_typ"),
        ({"options": {"aws": {"arch": "sparc"}}}, "options.aws.arch"),
        ({"options": {"aws": {"vpc_id": "vpc-12345678"}}}, "options.aws.vpc_id"),
        ({"options": {"aws": {"subnet_id": "sn-1"}}}, "options.aws.subnet_id"),
        ({"options": {"aws": {"ingress_cidrs": ["10.0.0.0/33"]}}}, "options.aws.ingress_cidrs"),
        ({"os_image": "windows-95"}, "os_image"),
        ({"resources": {"gpu": 16}}, "resources.gpu"),
        ({"user_data": "#!/bin/sh\n" + "x" * 20_000}, "user_data"),
    ],
)
def test_invalid_specs_fail_before_any_api_call(
    aws: AwsProvider, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(vmkit.SpecError) as info:
        aws.deploy(workload("bad", replicas=1, **fields))
    assert info.value.field == field
    assert sum(aws.api_calls.values()) == 0


def test_isolation_is_ignored_on_vms(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("iso", replicas=1, isolation="sandbox"))
    assert machine.state == vmkit.MachineState.RUNNING


# ----------------------------------------------------------- security group


def test_only_declared_ports_are_opened(aws: AwsProvider) -> None:
    aws.deploy(workload("fw", replicas=1, ports=[80, vmkit.Port(port=53, protocol="udp")]))
    assert group_rules(aws, "vmkit-fw") == anywhere(("tcp", 80), ("udp", 53))
    (found,) = aws.ec2_client.describe_security_groups(GroupNames=["vmkit-fw"])["SecurityGroups"]
    assert tags(found)["vmkit-workload"] == "fw"


def test_no_ssh_and_no_key_pair_without_a_key(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("nokey", replicas=1, image=None, ports=[]))
    assert group_rules(aws, "vmkit-nokey") == set()
    assert "KeyName" not in instance(aws, machine.id)
    named = [{"Name": "key-name", "Values": ["vmkit-nokey"]}]
    assert aws.ec2_client.describe_key_pairs(Filters=named)["KeyPairs"] == []


def test_ssh_opens_only_with_a_key_which_is_imported(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("ssh", replicas=1, ssh_public_key=SSH_KEY))
    assert group_rules(aws, "vmkit-ssh") == anywhere(("tcp", 80), ("tcp", 22))
    assert instance(aws, machine.id)["KeyName"] == "vmkit-ssh"
    (pair,) = aws.ec2_client.describe_key_pairs(KeyNames=["vmkit-ssh"])["KeyPairs"]
    assert tags(pair)["vmkit-workload"] == "ssh"


def test_a_changed_key_is_imported_again(aws: AwsProvider) -> None:
    aws.deploy(workload("rekey", replicas=1, ssh_public_key=SSH_KEY))
    (before,) = aws.ec2_client.describe_key_pairs(KeyNames=["vmkit-rekey"])["KeyPairs"]
    aws.deploy(workload("rekey", replicas=1, ssh_public_key=SSH_KEY))
    assert aws.api_calls["ec2:ImportKeyPair"] == 1
    aws.deploy(workload("rekey", replicas=1, ssh_public_key=OTHER_KEY))
    (after,) = aws.ec2_client.describe_key_pairs(KeyNames=["vmkit-rekey"])["KeyPairs"]
    assert after["KeyFingerprint"] != before["KeyFingerprint"]


def test_redeploy_brings_the_group_back_to_the_declared_rules(aws: AwsProvider) -> None:
    aws.deploy(workload("drift", replicas=1))
    (group,) = aws.ec2_client.describe_security_groups(GroupNames=["vmkit-drift"])["SecurityGroups"]
    aws.ec2_client.authorize_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 3306,
                "ToPort": 3306,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "UserIdGroupPairs": [{"GroupId": group["GroupId"]}],
            },
        ],
    )
    aws.deploy(workload("drift", replicas=1, ports=[80, 443]))
    assert group_rules(aws, "vmkit-drift") == anywhere(("tcp", 80), ("tcp", 443))


def test_ingress_cidrs_replace_anywhere(aws: AwsProvider) -> None:
    options = {"aws": {"ingress_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}}
    aws.deploy(workload("private", replicas=1, options=options))
    assert group_rules(aws, "vmkit-private") == {
        ("tcp", 80, "10.0.0.0/8"),
        ("tcp", 80, "2001:db8::/32"),
    }


def test_a_named_subnet_gets_the_group_by_id(aws: AwsProvider) -> None:
    ec2 = aws.ec2_client
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    spec = workload("sub", replicas=1, options={"aws": {"subnet_id": subnet}})
    (request,) = aws.plan(spec).requests
    assert request.body["SubnetId"] == subnet
    assert "SecurityGroups" not in request.body
    (machine,) = aws.deploy(spec)
    found = instance(aws, machine.id)
    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["vmkit-sub"]}]
    )["SecurityGroups"]
    assert group["VpcId"] == vpc
    assert found["SubnetId"] == subnet
    assert [g["GroupId"] for g in found["SecurityGroups"]] == [group["GroupId"]]
    (request,) = aws.plan(spec.model_copy(update={"replicas": 2})).requests
    assert request.body["SecurityGroupIds"] == [group["GroupId"]]


# ------------------------------------------------------------ list, get, delete


def test_unknown_and_unmanaged_ids_are_not_found(aws: AwsProvider) -> None:
    for missing in ("i-0123456789abcdef0", "not-an-id"):
        with pytest.raises(vmkit.NotFound):
            aws.get(missing)
    ami = aws.ssm_client.get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    foreign = aws.ec2_client.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]
    with pytest.raises(vmkit.NotFound, match="managed"):
        aws.get(foreign["InstanceId"])
    assert aws.list() == []


def test_list_reads_every_page(aws: AwsProvider) -> None:
    ami = aws.ssm_client.get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    for replica in range(101):  # moto pages DescribeInstances at 100 reservations
        aws.ec2_client.run_instances(
            ImageId=ami,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "vmkit-workload", "Value": "bulk"},
                        {"Key": "vmkit-replica", "Value": str(replica)},
                    ],
                }
            ],
        )
    machines = aws.list("bulk")
    assert [m.replica for m in machines] == list(range(101))
    assert aws.api_calls["ec2:DescribeInstances"] == 2


def test_machines_carry_the_instance_record(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("rec", replicas=1))
    assert machine.provider == "aws"
    assert machine.kind == "vm"
    assert machine.location is not None
    assert machine.location.startswith("us-east-1")
    assert machine.private_ip
    assert machine.created_at is not None
    assert machine.raw["InstanceId"] == machine.id
    assert aws.location == "us-east-1"


def test_logs_are_the_decoded_console_output(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("console", replicas=1))
    text = machine.logs()
    assert text
    assert not text.startswith("TGludXg")


def test_destroy_removes_the_group_the_key_pair_and_the_volumes(aws: AwsProvider) -> None:
    aws.deploy(workload("bye", replicas=2, ssh_public_key=SSH_KEY))
    aws.destroy("bye")
    ec2 = aws.ec2_client
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["vmkit-bye"]}])
    assert groups["SecurityGroups"] == []
    pairs = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["vmkit-bye"]}])
    assert pairs["KeyPairs"] == []
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag:vmkit-workload", "Values": ["bye"]}])
    assert volumes["Volumes"] == []


def test_destroy_finds_the_group_and_key_pair_on_the_instances(aws: AwsProvider) -> None:
    aws.deploy(workload("own", replicas=2, ssh_public_key=SSH_KEY))
    aws.api_calls.clear()
    aws.destroy("own")
    assert "ec2:DescribeSecurityGroups" not in aws.api_calls
    assert "ec2:DescribeKeyPairs" not in aws.api_calls
    assert aws.api_calls["ec2:DeleteSecurityGroup"] == aws.api_calls["ec2:DeleteKeyPair"] == 1
    assert aws.gc(dry_run=True) == []


def test_destroy_without_instances_looks_the_shared_resources_up(
    aws: AwsProvider, aws_config: dict[str, Any]
) -> None:
    aws.deploy(workload("bare", replicas=1, ssh_public_key=SSH_KEY))
    aws.ec2_client.terminate_instances(InstanceIds=[m.id for m in aws.list("bare")])
    other = vmkit.connect("aws", **aws_config)  # knows nothing of the instances
    other.destroy("bare")
    assert other.api_calls["ec2:DescribeSecurityGroups"] == 1
    assert other.api_calls["ec2:DescribeKeyPairs"] == 1
    named = [{"Name": "group-name", "Values": ["vmkit-bare"]}]
    assert aws.ec2_client.describe_security_groups(Filters=named)["SecurityGroups"] == []
    named = [{"Name": "key-name", "Values": ["vmkit-bare"]}]
    assert aws.ec2_client.describe_key_pairs(Filters=named)["KeyPairs"] == []


def test_a_spec_without_its_key_drops_the_key_pair(aws: AwsProvider) -> None:
    aws.deploy(workload("unkeyed", replicas=1, ssh_public_key=SSH_KEY))
    (machine,) = aws.deploy(workload("unkeyed", replicas=1))
    assert "KeyName" not in instance(aws, machine.id)
    named = [{"Name": "key-name", "Values": ["vmkit-unkeyed"]}]
    assert aws.ec2_client.describe_key_pairs(Filters=named)["KeyPairs"] == []
    assert group_rules(aws, "vmkit-unkeyed") == anywhere(("tcp", 80))
    aws.destroy("unkeyed")
    assert aws.gc(dry_run=True) == []


def test_a_first_deploy_creates_its_group_without_looking(aws: AwsProvider) -> None:
    aws.deploy(workload("first", replicas=1))
    assert "ec2:DescribeSecurityGroups" not in aws.api_calls
    assert "ec2:DescribeVpcs" not in aws.api_calls
    (group,) = aws.ec2_client.describe_security_groups(GroupNames=["vmkit-first"])["SecurityGroups"]
    default = aws.ec2_client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
    assert group["VpcId"] == default["Vpcs"][0]["VpcId"]
    aws.api_calls.clear()
    aws.deploy(workload("first", replicas=1))  # a redeploy reads the group's rules
    assert aws.api_calls["ec2:DescribeSecurityGroups"] == 1
    assert "ec2:CreateSecurityGroup" not in aws.api_calls


def test_a_region_without_a_default_vpc_says_to_name_a_subnet(aws: AwsProvider) -> None:
    Intercept(
        aws.ec2_client,
        "CreateSecurityGroup",
        always(lambda: ec2_error("VPCIdNotSpecified", 400, "No default VPC for this user")),
    )
    with pytest.raises(vmkit.ProviderError, match="subnet_id"):
        aws.deploy(workload("novpc", replicas=1))
    assert "ec2:RunInstances" not in aws.api_calls


def test_destroy_waits_out_lingering_network_interfaces(aws: AwsProvider) -> None:
    seen = Intercept(aws.ec2_client, "DeleteSecurityGroup", first(ec2_error("DependencyViolation")))
    aws.deploy(workload("linger", replicas=1))
    aws.destroy("linger")
    assert len(seen.bodies) == 2
    groups = aws.ec2_client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["vmkit-linger"]}]
    )
    assert groups["SecurityGroups"] == []


# ----------------------------------------------------------------------- gc


AMAZON_LINUX = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def age(resource_id: str, minutes: int) -> None:
    """Make an instance or volume ``minutes`` older in moto's own state (moto
    has no API for it): what a crashed deploy left a while ago."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    if resource_id.startswith("i-"):
        found = backend.get_instance(resource_id)
        found.launch_time -= timedelta(minutes=minutes)
    else:
        volume = backend.get_volume(resource_id)
        volume.create_time -= timedelta(minutes=minutes)


def launch_untagged(aws: AwsProvider, name: str) -> dict[str, Any]:
    """An instance as RunInstances leaves it before vmkit tags its replica."""
    ami = aws.ssm_client.get_parameter(Name=AMAZON_LINUX)["Parameter"]["Value"]
    owned = [{"Key": "vmkit-workload", "Value": name}, {"Key": "vmkit-spec", "Value": "0" * 16}]
    found: dict[str, Any] = aws.ec2_client.run_instances(
        ImageId=ami,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": owned},
            {"ResourceType": "volume", "Tags": owned},
        ],
    )["Instances"][0]
    return found


def orphan_volume(aws: AwsProvider, name: str) -> str:
    volume = aws.ec2_client.create_volume(
        AvailabilityZone="us-east-1a",
        Size=8,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": "vmkit-workload", "Value": name}]}
        ],
    )
    return str(volume["VolumeId"])


def test_gc_finds_each_kind_of_leftover_and_deletes_it(aws: AwsProvider) -> None:
    aws.deploy(workload("gone", replicas=1, ssh_public_key=SSH_KEY))
    (machine,) = aws.list("gone")
    # A crash after a replica was terminated and before destroy deleted the
    # group and key pair; then a deploy killed between RunInstances and
    # CreateTags; then a restore killed after CreateVolume.
    aws.ec2_client.terminate_instances(InstanceIds=[machine.id])
    debris = launch_untagged(aws, "gone")
    age(debris["InstanceId"], 11)
    volume_id = orphan_volume(aws, "gone")

    listed = aws.gc(dry_run=True)

    kinds = sorted((o.kind, o.name) for o in listed)
    assert kinds == sorted(
        [
            ("instance", debris["InstanceId"]),
            ("key-pair", "vmkit-gone"),
            ("security-group", "vmkit-gone"),
            ("volume", volume_id),
            ("volume", debris["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]),
        ]
    )
    assert {o.workload for o in listed} == {"gone"}
    assert all(o.provider == "aws" and o.reason for o in listed)
    assert instance(aws, debris["InstanceId"])["State"]["Name"] == "running"  # dry run

    assert aws.gc() == listed
    assert instance(aws, debris["InstanceId"])["State"]["Name"] == "terminated"
    named = [{"Name": "group-name", "Values": ["vmkit-gone"]}]
    assert aws.ec2_client.describe_security_groups(Filters=named)["SecurityGroups"] == []
    assert (
        aws.ec2_client.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["vmkit-gone"]}])[
            "KeyPairs"
        ]
        == []
    )
    owned = [{"Name": "tag:vmkit-workload", "Values": ["gone"]}]
    assert aws.ec2_client.describe_volumes(Filters=owned)["Volumes"] == []
    assert aws.gc() == []


def test_gc_leaves_live_workloads_and_creates_in_flight_alone(aws: AwsProvider) -> None:
    aws.deploy(workload("live", replicas=1, ssh_public_key=SSH_KEY))
    # Another deploy launched this a moment ago and is tagging it: its group
    # and key pair are in use too.
    aws.deploy(workload("tagging", replicas=1))
    aws.ec2_client.terminate_instances(InstanceIds=[m.id for m in aws.list("tagging")])
    launch_untagged(aws, "tagging")
    # A restore of a live machine that has just made its new volume.
    orphan_volume(aws, "live")

    assert aws.gc(dry_run=True) == []
    assert aws.gc() == []
    assert len(aws.list("live")) == 1


def test_an_unattached_volume_of_a_live_workload_counts_once_it_is_old(aws: AwsProvider) -> None:
    aws.deploy(workload("restored", replicas=1))
    volume_id = orphan_volume(aws, "restored")
    assert aws.gc(dry_run=True) == []
    age(volume_id, 11)
    (orphan,) = aws.gc(dry_run=True)
    assert (orphan.kind, orphan.id) == ("volume", volume_id)
    assert orphan.reason == "attached to no instance"


def test_gc_never_counts_snapshots_nor_what_vmkit_did_not_make(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("kept", replicas=1))
    snap = machine.snapshot("backup")
    aws.destroy("kept")  # the snapshot stays: a backup
    vpc = aws.ec2_client.describe_vpcs()["Vpcs"][0]["VpcId"]
    # The user's own resources: vmkit's name without its tag, its tag on another name.
    aws.ec2_client.create_security_group(
        GroupName="vmkit-mine", Description="not vmkit's", VpcId=vpc
    )
    aws.ec2_client.create_security_group(
        GroupName="mine",
        Description="tagged by hand",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "vmkit-workload", "Value": "x"}]}
        ],
    )
    aws.ec2_client.create_volume(AvailabilityZone="us-east-1a", Size=8)

    assert aws.gc() == []
    assert [s.id for s in aws.snapshots("kept")] == [snap.id]
    names = {g["GroupName"] for g in aws.ec2_client.describe_security_groups()["SecurityGroups"]}
    assert {"vmkit-mine", "mine"} <= names


def test_gc_of_one_workload_leaves_the_others(aws: AwsProvider) -> None:
    for name in ("one", "two"):
        aws.deploy(workload(name, replicas=1))
        aws.ec2_client.terminate_instances(InstanceIds=[m.id for m in aws.list(name)])
    (orphan,) = aws.gc("one")
    assert (orphan.kind, orphan.workload) == ("security-group", "one")
    assert [o.workload for o in aws.gc(dry_run=True)] == ["two"]


# --------------------------------------------------------------- snapshots


def test_snapshot_is_a_tagged_image(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("snap", replicas=1))
    snap = machine.snapshot("before upgrade")
    assert (snap.name, snap.workload, snap.machine_id) == ("before upgrade", "snap", machine.id)
    (image,) = aws.ec2_client.describe_images(ImageIds=[snap.id])["Images"]
    assert tags(image) | {"Name": ""} == {
        "vmkit-workload": "snap",
        "vmkit-replica": "0",
        "vmkit-machine": machine.id,
        "vmkit-snapshot-name": "before upgrade",
        "Name": "",
    }
    assert aws.api_calls["ec2:CreateImage"] == 1
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    (ebs,) = aws.ec2_client.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert tags(ebs)["vmkit-workload"] == "snap"
    assert tags(ebs)["vmkit-image"] == snap.id


def test_restore_swaps_the_root_volume_and_keeps_the_machine(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("back", replicas=1, labels={"team": "db"}))
    before = instance(aws, machine.id)
    old_volume = before["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    snap = machine.snapshot("v1")
    restored = machine.restore(snap)
    assert (restored.id, restored.name, restored.replica, restored.labels) == (
        machine.id,
        "back-0",
        0,
        {"team": "db"},
    )
    after = instance(aws, machine.id)
    (mapping,) = after["BlockDeviceMappings"]
    assert mapping["DeviceName"] == before["RootDeviceName"]
    assert mapping["Ebs"]["VolumeId"] != old_volume
    assert mapping["Ebs"]["DeleteOnTermination"] is True
    (volume,) = aws.ec2_client.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
    (image,) = aws.ec2_client.describe_images(ImageIds=[snap.id])["Images"]
    assert volume["SnapshotId"] == image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert volume["Encrypted"] is True
    assert tags(volume)["vmkit-workload"] == "back"
    with pytest.raises(ClientError, match="NotFound"):
        aws.ec2_client.describe_volumes(VolumeIds=[old_volume])


def test_delete_snapshot_removes_the_image_and_its_ebs_snapshots(aws: AwsProvider) -> None:
    (machine,) = aws.deploy(workload("gone", replicas=1))
    snap = machine.snapshot("old")
    (image,) = aws.ec2_client.describe_images(ImageIds=[snap.id])["Images"]
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap.delete()
    assert aws.ec2_client.describe_images(ImageIds=[snap.id])["Images"] == []
    with pytest.raises(ClientError, match="NotFound"):
        aws.ec2_client.describe_snapshots(SnapshotIds=[snapshot_id])
    snap.delete()
    assert aws.snapshots("gone") == []


def test_delete_snapshot_refuses_an_image_vmkit_did_not_make(aws: AwsProvider) -> None:
    ami = aws.ssm_client.get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    with pytest.raises(vmkit.NotFound):
        aws.delete_snapshot(ami)
    assert aws.ec2_client.describe_images(ImageIds=[ami])["Images"]


# ------------------------------------------------------------------ errors


def test_auth_errors_are_not_retried_and_keep_no_secret(aws_config: dict[str, Any]) -> None:
    aws = vmkit.connect(
        "aws", **aws_config, aws_access_key_id="AKIAVMKITTEST", aws_secret_access_key=SECRET
    )
    assert isinstance(aws, AwsProvider)
    Intercept(aws.ec2_client, "DescribeInstances", always(lambda: ec2_error("AuthFailure", 401)))
    with pytest.raises(vmkit.AuthError) as info:
        aws.list()
    assert aws.api_calls["ec2:DescribeInstances"] == 1
    assert "AuthFailure" in str(info.value)
    assert "injected by the test" in str(info.value)
    assert SECRET not in str(info.value)
    assert isinstance(info.value.__cause__, ClientError)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InsufficientInstanceCapacity", 500),
        ("VcpuLimitExceeded", 400),
        ("InstanceLimitExceeded", 400),
    ],
)
def test_capacity_and_limits_are_quota_errors_not_retried(
    aws: AwsProvider, code: str, status: int
) -> None:
    seen = Intercept(aws.ec2_client, "RunInstances", always(lambda: ec2_error(code, status)))
    with pytest.raises(vmkit.QuotaExceeded, match=code) as caught:
        aws.deploy(workload("full", replicas=2, ssh_public_key=SSH_KEY))
    assert sorted(caught.value.failed) == ["full-0", "full-1"]
    # Only a zone short of capacity is asked again, for what fits (MinCount 1).
    counts = [(b["MinCount"], b["MaxCount"]) for b in seen.bodies]
    if code == "InsufficientInstanceCapacity":
        assert counts == [("2", "2"), ("1", "2")]
    else:
        assert counts == [("2", "2")]
    # Nothing was launched, so the group and key pair made for it are gone too.
    named = [{"Name": "group-name", "Values": ["vmkit-full"]}]
    assert aws.ec2_client.describe_security_groups(Filters=named)["SecurityGroups"] == []
    named = [{"Name": "key-name", "Values": ["vmkit-full"]}]
    assert aws.ec2_client.describe_key_pairs(Filters=named)["KeyPairs"] == []


def test_throttling_past_the_budget_is_throttled(aws_config: dict[str, Any]) -> None:
    aws = vmkit.connect("aws", **{**aws_config, "retry_attempts": 3, "retry_timeout": 5.0})
    assert isinstance(aws, AwsProvider)
    Intercept(
        aws.ec2_client, "DescribeInstances", always(lambda: ec2_error("RequestLimitExceeded", 503))
    )
    with pytest.raises(vmkit.Throttled, match="RequestLimitExceeded"):
        aws.list()
    assert aws.api_calls["ec2:DescribeInstances"] == 3


def test_error_map_classifies_botocore_exceptions() -> None:
    errors = AwsErrors()
    assert errors.is_retryable(EndpointConnectionError(endpoint_url="https://ec2"))
    assert not errors.is_retryable(SSLError(endpoint_url="https://ec2", error="bad cert"))
    assert isinstance(errors.translate(NoCredentialsError(), "ec2:X"), vmkit.AuthError)

    def client_error(code: str, status: int) -> ClientError:
        response: Any = {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, "X")

    assert errors.is_retryable(client_error("InternalError", 500))
    assert errors.is_retryable(client_error("Throttling", 400))
    assert not errors.is_retryable(client_error("InsufficientInstanceCapacity", 500))
    assert not errors.is_retryable(client_error("InvalidParameterValue", 400))
    assert isinstance(
        errors.translate(client_error("InvalidVolume.NotFound", 400), "X"), vmkit.NotFound
    )
    assert isinstance(errors.translate(client_error("Throttling", 400), "X"), vmkit.Throttled)
    plain = errors.translate(client_error("InvalidParameterValue", 400), "X")
    assert type(plain) is vmkit.ProviderError
    assert math.isclose(
        errors.retry_after(
            ClientError(
                {
                    "Error": {"Code": "Throttling"},
                    "ResponseMetadata": {"HTTPHeaders": {"retry-after": "2.5"}},
                },
                "X",
            )
        )
        or 0,
        2.5,
    )


# ---------------------------------------------------------------- simulator


def test_the_simulator_resolves_every_portable_image_to_its_architecture(
    aws: AwsProvider,
) -> None:
    from vmkit.catalog import PORTABLE_IMAGES, Arch, resolve_image

    arches: tuple[Arch, ...] = ("x86_64", "arm64")
    for arch in arches:
        for name in PORTABLE_IMAGES:
            parameter = resolve_image("aws", name, arch=arch).value
            ami = aws.ssm_client.get_parameter(Name=parameter)["Parameter"]["Value"]
            (image,) = aws.ec2_client.describe_images(ImageIds=[ami])["Images"]
            assert image["Architecture"] == arch, (name, arch)


def test_the_simulator_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.settings

    from vmkit.testing.sim import simulated_aws

    monkeypatch.setenv("AWS_PROFILE", "developer")
    monkeypatch.delenv("MOTO_ENABLE_AMI_VALIDATION", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-real-one")
    with simulated_aws() as config:
        assert config["region"] == "us-east-1"
        assert "AWS_PROFILE" not in os.environ
        assert moto.settings.ENABLE_AMI_VALIDATION
    assert os.environ["AWS_PROFILE"] == "developer"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIA-real-one"
    assert "MOTO_ENABLE_AMI_VALIDATION" not in os.environ
    assert not moto.settings.ENABLE_AMI_VALIDATION


def test_sessions_share_one_model_loader_without_growing_it() -> None:
    from vmkit.providers.aws.session import session

    def make() -> Any:
        return session(
            profile=None,
            region="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token=None,
        )

    first, second = make(), make()
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    paths = list(loader.search_paths)
    make()
    assert loader.search_paths == paths


# ----------------------------------------------------------- launch lists


def test_replica_lists_read_back_by_launch_index() -> None:
    from vmkit.providers.aws import translate as tr

    for replicas in ([0], [0, 1, 2], [3, 7, 9, 10, 11, 12], [5, 4, 3], [1, 10, 11, 100]):
        value = tr.format_replicas(replicas)
        assert [tr.replica_at(value, i) for i in range(len(replicas))] == replicas, value
        assert tr.replica_at(value, len(replicas)) is None
    assert tr.format_replicas(range(200)) == "0-199"
    assert tr.format_replicas([3, 7, 9, 10, 11, 12]) == "3_7_9-12"
    for junk in ("", "a", "1-", "-1", "3-1", "1,2", "²", "1__2"):
        assert tr.replica_at(junk, 0) is None, junk


def test_a_replica_list_too_long_for_a_tag_is_cut_into_launches() -> None:
    from vmkit.providers.aws import translate as tr

    assert tr.launch_batches(list(range(5000))) == [tuple(range(5000))]
    scattered = list(range(0, 2000, 2))
    batches = tr.launch_batches(scattered)
    assert [r for batch in batches for r in batch] == scattered
    assert len(batches) > 1
    assert all(len(tr.format_replicas(b)) <= 256 for b in batches)
    # Each launch is as long as a tag allows: one more replica would not fit.
    assert all(len(tr.format_replicas([*b, b[-1] + 2])) > 256 for b in batches[:-1])


def test_instance_replica_reads_the_launch_list_at_the_launch_index() -> None:
    from vmkit.providers.aws.translate import instance_replica

    def record(tags: dict[str, str], index: int | None) -> dict[str, Any]:
        found: dict[str, Any] = {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        if index is not None:
            found["AmiLaunchIndex"] = index
        return found

    assert instance_replica(record({"vmkit-replicas": "3_7_9-12"}, 3)) == 10
    assert instance_replica(record({"vmkit-replicas": "3_7_9-12"}, 6)) is None
    assert instance_replica(record({"vmkit-replicas": "0-4"}, None)) is None
    assert instance_replica(record({"vmkit-replicas": "0-4", "vmkit-replica": "9"}, 1)) == 9
    assert instance_replica(record({"vmkit-replica": "2"}, None)) == 2
    assert instance_replica(record({}, 0)) is None


def test_scattered_missing_replicas_take_several_launches(aws: AwsProvider) -> None:
    machines = aws.deploy(workload("wide", replicas=160))
    odd = [m.id for m in machines if m.replica is not None and m.replica % 2]
    aws.ec2_client.terminate_instances(InstanceIds=odd)
    aws.api_calls.clear()

    plan = aws.plan(workload("wide", replicas=160))
    assert [r for request in plan.requests for r in request.replicas] == list(range(1, 160, 2))
    assert len(plan.requests) == 2
    for request in plan.requests:
        (spec,) = [t for t in request.body["TagSpecifications"] if t["ResourceType"] == "instance"]
        launch = {t["Key"]: t["Value"] for t in spec["Tags"]}["vmkit-replicas"]
        assert len(launch) <= 256
    redeployed = aws.apply(plan)
    assert [m.name for m in redeployed] == [f"wide-{i}" for i in range(160)]
    assert aws.api_calls["ec2:RunInstances"] == 2
    assert "ec2:CreateTags" not in aws.api_calls
    assert not aws.plan(workload("wide", replicas=160)).changes
