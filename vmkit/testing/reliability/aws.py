"""The reliability checks' harness for EC2: moto behind the EC2 front, its knobs, its census.

Every knob is EC2 behaviour the front plays (see
:class:`~vmkit.testing.fakes.aws.AwsFront`): a zone short of capacity for
``limit`` (RunInstances launches what fits, ``InsufficientInstanceCapacity``
beyond), instances that boot slowly for ``hold``, and termination protection
(the ``disableApiTermination`` attribute) for ``protect``. The census and the
knobs talk to moto directly (the front's ``upstream``), never through vmkit
nor through the faults. An instance's replica is read from its record as EC2
gives it, by the backend's own rule (``translate.instance_replica``: its
``vmkit-replica`` tag, else its launch's ``vmkit-replicas`` list at its
``AmiLaunchIndex``), so that the census and vmkit agree on identity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import vmkit
from vmkit.plan import IN_FLIGHT, SPEC_TAG, WORKLOAD_TAG
from vmkit.provider import Provider
from vmkit.providers.aws.translate import instance_replica
from vmkit.testing.fakes.aws import AwsFront, aws_front
from vmkit.testing.faults import FaultPlan
from vmkit.testing.reliability import Census, Harness
from vmkit.testing.sim import amazon_linux_image

__all__ = ["AwsHarness"]

REGION = "us-east-1"
# An ed25519 public key for the leaked key pair (EC2 imports the public half only).
LEAKED_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0k7OBQjG0l8eW2C/cjV3ZY7H1k6N5kpT0mh1p8W0m crashed"
)
# Instance states in which an instance still exists (InstanceState, EC2 API reference).
ALIVE = ("pending", "running", "shutting-down", "stopping", "stopped")


class AwsHarness(Harness):
    """moto_server behind :class:`~vmkit.testing.fakes.aws.AwsFront` on 127.0.0.1."""

    name = "aws"
    create_method = "POST"
    # The front's fault path of a launch: RunInstances makes the instances
    # with their volumes and network interfaces, all in one request.
    create_path = r"^/ec2/RunInstances$"
    # The front answers a throttled request as EC2 does: RequestLimitExceeded.
    throttle_status = 429

    def __init__(self) -> None:
        self._front: AwsFront | None = None

    @property
    def front(self) -> AwsFront:
        if self._front is None:
            raise RuntimeError("the harness is not started")
        return self._front

    @contextmanager
    def start(self, faults: FaultPlan) -> Iterator[None]:
        with aws_front(REGION, faults) as front:
            self._front = front
            try:
                yield
            finally:
                self._front = None

    def connect(self, **options: Any) -> Provider:
        # Twelve tries over up to a minute outlast a 10 s storm with full jitter.
        settings = {**self.front.config(REGION), "retry_attempts": 12, "retry_timeout": 60.0}
        return vmkit.connect("aws", **{**settings, **options})

    def ec2(self) -> Any:
        """A boto3 EC2 client on moto itself: no front, no faults, no vmkit."""
        import boto3

        host, port = self.front.upstream
        return boto3.client(
            "ec2",
            endpoint_url=f"http://{host}:{port}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # ----------------------------------------------------------------- census

    def census(self, workload: str) -> Census:
        """Instances that still exist (terminated ones are records, not
        machines), the workload's security group and key pair (by tag or by
        name), and the volumes it tagged."""
        ec2 = self.ec2()
        owner = [{"Name": f"tag:{WORKLOAD_TAG}", "Values": [workload]}]
        alive = [{"Name": "instance-state-name", "Values": list(ALIVE)}]
        reservations = ec2.describe_instances(Filters=owner + alive)["Reservations"]
        instances = [i for r in reservations for i in r["Instances"]]
        name = f"vmkit-{workload}"
        groups = {
            g["GroupId"]: g
            for filters in (owner, [{"Name": "group-name", "Values": [name]}])
            for g in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
        }
        pairs = {
            p["KeyPairId"]: p
            for filters in (owner, [{"Name": "key-name", "Values": [name]}])
            for p in ec2.describe_key_pairs(Filters=filters)["KeyPairs"]
        }
        volumes = ec2.describe_volumes(Filters=owner)["Volumes"]
        machines = {i["InstanceId"] for i in instances if instance_replica(i) is not None}
        owned = [v for v in volumes if {a["InstanceId"] for a in v["Attachments"]} & machines]
        orphans = len(volumes) - len(owned)
        orphans += 0 if machines else len(groups) + len(pairs)
        resources = Counter(
            {"security-group": len(groups), "key-pair": len(pairs), "volume": len(volumes)}
        )
        return Census(
            replicas=tuple(instance_replica(i) for i in instances),
            resources={kind: n for kind, n in sorted(resources.items()) if n},
            orphans=orphans,
        )

    # ------------------------------------------------------------------ knobs

    def limit(self, machines: int) -> None:
        """A zone with room for ``machines`` running instances."""
        self.front.limit_capacity(machines)

    def allow(self) -> None:
        self.front.limit_capacity(None)

    def hold(self) -> None:
        self.front.hold_boot()

    def release(self) -> None:
        self.front.release_boot()

    def protect(self, workload: str, replica: int) -> None:
        """Termination protection on the replica's instance."""
        self._protection(workload, replica, True)

    def unprotect(self, workload: str, replica: int) -> None:
        self._protection(workload, replica, False)

    def _protection(self, workload: str, replica: int, on: bool) -> None:
        # The attribute behind "termination protection":
        # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_ChangingDisableAPITermination.html
        ec2 = self.ec2()
        filters = [
            {"Name": f"tag:{WORKLOAD_TAG}", "Values": [workload]},
            {"Name": "instance-state-name", "Values": list(ALIVE)},
        ]
        reservations = ec2.describe_instances(Filters=filters)["Reservations"]
        ids = [
            i["InstanceId"]
            for r in reservations
            for i in r["Instances"]
            if instance_replica(i) == replica
        ]
        if not ids:
            raise KeyError(f"no instance of {workload} replica {replica}")
        for instance_id in ids:
            ec2.modify_instance_attribute(
                InstanceId=instance_id, DisableApiTermination={"Value": on}
            )

    def leak(self, workload: str) -> int:
        """What a process killed mid-deploy leaves, made as vmkit makes it:
        the workload's security group and key pair, an instance launched
        (with its tagged root volume) that no replica claims (no launch list,
        no ``vmkit-replica`` tag), and an unattached volume of a restore that
        did not finish. 5 in all.

        The instance is made older than ``IN_FLIGHT`` in moto's own state
        (moto has no API to age an instance): a crashed process's debris,
        not a deploy still tagging it.
        """
        ec2 = self.ec2()
        tags = {WORKLOAD_TAG: workload, SPEC_TAG: "0" * 16}
        name = f"vmkit-{workload}"
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
        ec2.create_security_group(
            GroupName=name,
            Description=f"vmkit workload {workload}: declared ports only",
            VpcId=vpc["VpcId"],
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": _tags({**tags, "Name": name})}
            ],
        )
        ec2.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=LEAKED_KEY.encode(),
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": _tags(tags)}],
        )
        image = amazon_linux_image(ec2)
        launched = ec2.run_instances(
            ImageId=image["ImageId"],
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SecurityGroups=[name],
            KeyName=name,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": _tags(tags)},
                {"ResourceType": "volume", "Tags": _tags(tags)},
            ],
        )["Instances"][0]
        _age(launched["InstanceId"], IN_FLIGHT + timedelta(minutes=1))
        ec2.create_volume(
            AvailabilityZone=launched["Placement"]["AvailabilityZone"],
            Size=8,
            VolumeType="gp3",
            Encrypted=True,
            TagSpecifications=[{"ResourceType": "volume", "Tags": _tags(tags)}],
        )
        return 5


def _age(instance_id: str, by: timedelta) -> None:
    """Move an instance's launch time back by ``by`` in moto's in-process state."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    instance = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance_id)
    instance.launch_time = instance.launch_time - by


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]
