"""Pure functions between vmkit's records and EC2's request/response shapes.

Nothing here calls AWS. Shapes are those of the EC2 API reference
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/) as boto3 exposes
them: ``RunInstances``, ``DescribeInstances``' ``Instance``, ``Image``,
``IpPermission``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from vmkit.catalog import PORTABLE_IMAGES, resolve_image
from vmkit.errors import SpecError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import REPLICA_TAG, SPEC_TAG, WORKLOAD_TAG, ownership_labels
from vmkit.providers.aws.launch import (
    REPLICAS_TAG,
    format_replicas,
    instance_replica,
    launch_batches,
    launch_indexed,
    parse_replica,
    replica_at,
    tags_of,
)
from vmkit.spec import Port, Workload

__all__ = [
    "KEY_HASH_TAG",
    "MACHINE_TAG",
    "OPTION_NAMES",
    "REPLICAS_TAG",
    "SNAPSHOT_IMAGE_TAG",
    "SNAPSHOT_NAME_TAG",
    "STATES",
    "Arch",
    "AwsOptions",
    "Rule",
    "desired_rules",
    "disk_gib",
    "existing_rules",
    "format_replicas",
    "image_reference",
    "instance_replica",
    "key_pair_name",
    "launch_batches",
    "launch_indexed",
    "launch_tags",
    "parse_options",
    "partial_token",
    "permissions",
    "replica_at",
    "replica_name",
    "replica_tags",
    "root_snapshot_id",
    "root_volume_size",
    "run_instances_body",
    "security_group_name",
    "snapshot_ids",
    "split_cidrs",
    "tag_list",
    "tags_of",
    "to_machine",
    "to_snapshot",
    "user_labels",
]

MACHINE_TAG = "vmkit-machine"
SNAPSHOT_NAME_TAG = "vmkit-snapshot-name"
SNAPSHOT_IMAGE_TAG = "vmkit-image"
KEY_HASH_TAG = "vmkit-key"

# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceState.html
STATES: Mapping[str, MachineState] = {
    "pending": MachineState.PENDING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "shutting-down": MachineState.DELETING,
    "terminated": MachineState.DELETED,
}

ANYWHERE = ("0.0.0.0/0", "::/0")


Arch = Literal["x86_64", "arm64"]


@dataclass(frozen=True)
class AwsOptions:
    """``Workload.options["aws"]``, validated."""

    instance_type: str | None = None
    arch: Arch = "x86_64"
    subnet_id: str | None = None
    vpc_id: str | None = None
    ingress_cidrs: tuple[str, ...] | None = None


OPTION_NAMES = ("arch", "ingress_cidrs", "instance_type", "subnet_id", "vpc_id")


def _text_option(options: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or (prefix and not value.startswith(prefix)):
        shape = f"an id starting with {prefix!r}" if prefix else "a non-empty string"
        raise SpecError(f"options.aws.{key}", f"must be {shape}, got {value!r}")
    return value.strip()


def parse_options(workload: Workload) -> AwsOptions:
    """Validate ``options["aws"]``. Raises SpecError naming ``options.aws.<key>``."""
    options = workload.options_for("aws")
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise SpecError(
            f"options.aws.{unknown[0]}", f"unknown option; accepted: {', '.join(OPTION_NAMES)}"
        )
    arch = options.get("arch", "x86_64")
    if arch not in ("x86_64", "arm64"):
        raise SpecError("options.aws.arch", f"must be 'x86_64' or 'arm64', got {arch!r}")
    cidrs = options.get("ingress_cidrs")
    if cidrs is not None:
        if isinstance(cidrs, str) or not isinstance(cidrs, Sequence) or not cidrs:
            raise SpecError("options.aws.ingress_cidrs", "must be a non-empty list of CIDRs")
        try:
            split_cidrs(str(c) for c in cidrs)
        except ValueError as exc:
            raise SpecError("options.aws.ingress_cidrs", str(exc)) from exc
        cidrs = tuple(str(c) for c in cidrs)
    subnet_id = _text_option(options, "subnet_id", "subnet-")
    vpc_id = _text_option(options, "vpc_id", "vpc-")
    if vpc_id is not None and subnet_id is None:
        raise SpecError(
            "options.aws.vpc_id",
            "instances launch into a subnet: give options.aws.subnet_id (its VPC is used)",
        )
    return AwsOptions(
        instance_type=_text_option(options, "instance_type"),
        arch=arch,
        subnet_id=subnet_id,
        vpc_id=vpc_id,
        ingress_cidrs=cidrs,
    )


def security_group_name(workload: str) -> str:
    """The workload's security group: ``vmkit-<workload>``."""
    return f"vmkit-{workload}"


def key_pair_name(workload: str) -> str:
    """The workload's imported key pair: ``vmkit-<workload>``."""
    return f"vmkit-{workload}"


def replica_name(workload: str, replica: int) -> str:
    """The deterministic name of replica ``replica``: ``<workload>-<replica>``."""
    return f"{workload}-{replica}"


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` -> ``[{"Key": "k", "Value": "v"}]``, in key order."""
    return [{"Key": key, "Value": tags[key]} for key in sorted(tags)]


def user_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """The user's labels: tags without vmkit's own, ``Name`` and AWS-reserved ``aws:``."""
    return {
        k: v
        for k, v in tags.items()
        if not k.startswith("vmkit-") and not k.startswith("aws:") and k != "Name"
    }


def replica_tags(workload: str, replica: int) -> list[dict[str, str]]:
    """The tags of one instance tagged on its own after RunInstances (when the
    answer gives no AmiLaunchIndex): its replica index and its name."""
    return tag_list({REPLICA_TAG: str(replica), "Name": replica_name(workload, replica)})


def disk_gib(size: int) -> int:
    """Bytes -> whole GiB for an EBS ``VolumeSize``, rounded up."""
    return max(1, math.ceil(size / 2**30))


def run_instances_body(
    workload: Workload,
    *,
    replicas: Sequence[int],
    image_id: str,
    instance_type: str,
    root_device: str,
    root_gib: int,
    client_token: str,
    user_data: str | None,
    security_group: str | None,
    security_group_id: str | None,
    subnet_id: str | None,
    key_name: str | None,
) -> dict[str, Any]:
    """The exact ``RunInstances`` parameters for ``replicas`` of ``workload``.

    One request makes the whole batch (``MinCount == MaxCount``), so EC2
    launches all or nothing; when it has no capacity for all, the backend
    asks again with ``MinCount`` 1 (``AwsProvider._launch``), and the
    instances launched are the first replicas of the list. Every instance
    and root volume is tagged at launch with the workload's tags and the
    list of ``replicas`` (``vmkit-replicas``, :func:`format_replicas`): the
    instance with ``AmiLaunchIndex`` *i* is ``replicas[i]``
    (:func:`instance_replica`). Instances are all named after the workload
    (``Name``): EC2 applies one tag set to every instance of a launch, and a
    name each would take one ``CreateTags`` per instance. The security
    group goes by name (``SecurityGroups``) in the default VPC, which
    RunInstances accepts there only, and by id (``SecurityGroupIds``) in a
    named subnet.
    The root volume is ``resources.disk``, or the image's ``root_gib`` if more:
    EC2 refuses one smaller than its snapshot (InvalidBlockDeviceMapping).
    UserData is plain text: boto3 base64-encodes it for RunInstances
    (botocore/handlers.py ``base64_encode_user_data``).
    """
    launch = {**ownership_labels(workload), REPLICAS_TAG: format_replicas(replicas)}
    body: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": len(replicas),
        "MaxCount": len(replicas),
        "ClientToken": client_token,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tag_list({**launch, "Name": workload.name})},
            {"ResourceType": "volume", "Tags": tag_list(launch)},
        ],
        # IMDSv2 only: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceMetadataOptionsRequest.html
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [
            {
                "DeviceName": root_device,
                "Ebs": {
                    "VolumeSize": max(disk_gib(workload.resources.disk), root_gib),
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
    }
    if user_data is not None:
        body["UserData"] = user_data
    if subnet_id is not None:
        body["SubnetId"] = subnet_id
        if security_group_id is not None:
            body["SecurityGroupIds"] = [security_group_id]
    elif security_group is not None:
        body["SecurityGroups"] = [security_group]
    if key_name is not None:
        body["KeyName"] = key_name
    if workload.spot:
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_SpotMarketOptions.html
        body["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
    return body


def launch_tags(body: Mapping[str, Any]) -> dict[str, str]:
    """The tags a RunInstances body gives its instances."""
    for spec in body.get("TagSpecifications", []):
        if spec.get("ResourceType") == "instance":
            return tags_of(spec)
    return {}


def image_reference(os_image: str, arch: Arch) -> tuple[str, str]:
    """``("ssm", parameter)`` or ``("ami", id)`` for ``os_image``. SpecError otherwise.

    Besides the portable names, an AMI id and an SSM parameter path (bare or
    as EC2's own ``resolve:ssm:`` form) are accepted as they are.
    """
    ref = resolve_image("aws", os_image, arch=arch)
    if ref.kind == "ssm-parameter":
        return "ssm", ref.value
    value = ref.value.strip()
    if value.startswith("resolve:ssm:"):
        value = value[len("resolve:ssm:") :]
    if value.startswith("/"):
        return "ssm", value
    if re.fullmatch(r"ami-[0-9a-f]{8,17}", value):
        return "ami", value
    raise SpecError(
        "os_image",
        f"{os_image!r} is not a portable image ({', '.join(PORTABLE_IMAGES)}), "
        "an AMI id (ami-...) or an SSM parameter path",
    )


def partial_token(client_token: str) -> str:
    """The ClientToken of the RunInstances that asks again for part of a
    batch EC2 had no capacity for: derived from the batch's own token, so it
    is new with each deploy call and the same on each retry (EC2 refuses a
    token reused with other parameters: IdempotentParameterMismatch)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"vmkit-partial:{client_token}"))


def to_machine(instance: Mapping[str, Any]) -> Machine:
    """A ``DescribeInstances`` instance -> Machine (``raw`` keeps the dict).

    Its replica is :func:`instance_replica`'s and its name ``<workload>-<replica>``;
    an instance with no replica yet is named by its ``Name`` tag, else its id.
    """
    tags = tags_of(instance)
    state = STATES.get(str(instance.get("State", {}).get("Name", "")), MachineState.UNKNOWN)
    launched = instance.get("LaunchTime")
    workload = tags.get(WORKLOAD_TAG, "")
    replica = instance_replica(instance)
    if workload and replica is not None:
        name = replica_name(workload, replica)
    else:
        name = tags.get("Name") or str(instance["InstanceId"])
    return Machine(
        id=str(instance["InstanceId"]),
        name=name,
        provider="aws",
        kind="vm",
        workload=workload,
        replica=replica,
        state=state,
        size=instance.get("InstanceType"),
        image=instance.get("ImageId"),
        location=instance.get("Placement", {}).get("AvailabilityZone"),
        private_ip=instance.get("PrivateIpAddress"),
        public_ip=instance.get("PublicIpAddress"),
        labels=user_labels(tags),
        created_at=launched if isinstance(launched, datetime) else None,
        spec_hash=tags.get(SPEC_TAG),
        raw=dict(instance),
    )


def _created(image: Mapping[str, Any]) -> datetime | None:
    value = image.get("CreationDate")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def to_snapshot(image: Mapping[str, Any]) -> Snapshot:
    """A ``DescribeImages`` image vmkit made -> Snapshot (its id is the AMI id)."""
    tags = tags_of(image)
    return Snapshot(
        id=str(image["ImageId"]),
        name=tags.get(SNAPSHOT_NAME_TAG) or str(image.get("Name", image["ImageId"])),
        provider="aws",
        workload=tags.get(WORKLOAD_TAG, ""),
        machine_id=tags.get(MACHINE_TAG) or image.get("SourceInstanceId"),
        state=str(image.get("State", "unknown")),
        created_at=_created(image),
        size=root_volume_size(image),
        replica=parse_replica(tags.get(REPLICA_TAG)),
        labels=user_labels(tags),
        raw=dict(image),
    )


def _root_ebs(image: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``Ebs`` of an image's root device mapping (first EBS one if unnamed)."""
    mappings = [
        m for m in image.get("BlockDeviceMappings") or [] if m.get("Ebs", {}).get("SnapshotId")
    ]
    for mapping in mappings:
        if mapping.get("DeviceName") == image.get("RootDeviceName"):
            return dict(mapping["Ebs"])
    return dict(mappings[0]["Ebs"]) if mappings else None


def root_volume_size(image: Mapping[str, Any]) -> int | None:
    """The image's root VolumeSize in GiB (EbsBlockDevice, EC2 API reference:
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_EbsBlockDevice.html)."""
    ebs = _root_ebs(image)
    size = ebs.get("VolumeSize") if ebs else None
    return int(size) if size else None


def root_snapshot_id(image: Mapping[str, Any]) -> str | None:
    """The EBS snapshot behind an image's root device (first EBS one if unnamed)."""
    ebs = _root_ebs(image)
    return str(ebs["SnapshotId"]) if ebs else None


def snapshot_ids(image: Mapping[str, Any]) -> list[str]:
    """Every EBS snapshot an image references."""
    return [
        str(m["Ebs"]["SnapshotId"])
        for m in image.get("BlockDeviceMappings") or []
        if m.get("Ebs", {}).get("SnapshotId")
    ]


# ------------------------------------------------------------ security groups


class Rule(NamedTuple):
    """One ingress grant: protocol, port range, and one source.

    ``kind`` is ``ipv4``, ``ipv6``, ``group`` or ``prefix`` (the four source
    lists of an ``IpPermission``), ``source`` the CIDR or id.
    """

    protocol: str
    from_port: int | None
    to_port: int | None
    kind: str
    source: str


def split_cidrs(cidrs: Iterable[str]) -> tuple[list[str], list[str]]:
    """CIDRs -> (IPv4, IPv6) in their normalized form. Raises ValueError."""
    v4: list[str] = []
    v6: list[str] = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        (v4 if network.version == 4 else v6).append(str(network))
    return v4, v6


def desired_rules(
    ports: Sequence[Port], *, ssh: bool, cidrs: Sequence[str] | None = None
) -> set[Rule]:
    """The ingress the spec declares: each port from ``cidrs`` (anywhere by
    default), plus 22/tcp only when ``ssh``."""
    v4, v6 = split_cidrs(cidrs if cidrs is not None else ANYWHERE)
    opened = {(p.protocol, p.port) for p in ports}
    if ssh:
        opened.add(("tcp", 22))
    rules: set[Rule] = set()
    for protocol, port in opened:
        rules.update(Rule(protocol, port, port, "ipv4", c) for c in v4)
        rules.update(Rule(protocol, port, port, "ipv6", c) for c in v6)
    return rules


def existing_rules(ip_permissions: Iterable[Mapping[str, Any]]) -> set[Rule]:
    """A group's ``IpPermissions`` as rules (one per source)."""
    rules: set[Rule] = set()
    for perm in ip_permissions:
        head = (str(perm.get("IpProtocol")), perm.get("FromPort"), perm.get("ToPort"))
        for item in perm.get("IpRanges") or []:
            rules.add(Rule(*head, "ipv4", str(item["CidrIp"])))
        for item in perm.get("Ipv6Ranges") or []:
            rules.add(Rule(*head, "ipv6", str(item["CidrIpv6"])))
        for item in perm.get("UserIdGroupPairs") or []:
            rules.add(Rule(*head, "group", str(item["GroupId"])))
        for item in perm.get("PrefixListIds") or []:
            rules.add(Rule(*head, "prefix", str(item["PrefixListId"])))
    return rules


def permissions(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """Rules -> ``IpPermissions`` for Authorize/RevokeSecurityGroupIngress, grouped
    by protocol and port range, in a stable order."""
    source_keys = {
        "ipv4": ("IpRanges", "CidrIp"),
        "ipv6": ("Ipv6Ranges", "CidrIpv6"),
        "group": ("UserIdGroupPairs", "GroupId"),
        "prefix": ("PrefixListIds", "PrefixListId"),
    }
    grouped: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    for rule in sorted(rules, key=lambda r: (r.protocol, r.from_port or 0, r.kind, r.source)):
        key = (rule.protocol, rule.from_port, rule.to_port)
        perm = grouped.setdefault(key, {"IpProtocol": rule.protocol})
        if rule.from_port is not None:
            perm["FromPort"] = rule.from_port
        if rule.to_port is not None:
            perm["ToPort"] = rule.to_port
        list_key, item_key = source_keys[rule.kind]
        perm.setdefault(list_key, []).append({item_key: rule.source})
    return list(grouped.values())
