"""A fleet on EC2: vmkit against the raw boto3 floor and Libcloud's EC2 driver,
side by side, for N replicas; wall time and API requests by action.

    python benchmarks/aws_deploy.py [--replicas 10,50,200] [--rounds 7] [--large-rounds 5]

The cloud is moto (``ThreadedMotoServer``) behind vmkit's EC2 front, in a
process of its own on 127.0.0.1 (``_aws_server.py``), which counts every
request by action. Each side of each round starts on a fresh account; the
sides take turns going first. The three sides launch the same AMI and
instance type with the same user data:

* vmkit: ``vmkit.connect("aws", ...)``, ``deploy(workload)`` (until every
  replica runs), then ``destroy(workload.name)``;
* boto3, the floor: resolve the image's SSM parameter, one
  ``run_instances(MinCount=N, MaxCount=N)``, the ``instance_running`` waiter;
  then one ``describe_instances`` by tag, one ``terminate_instances`` and the
  ``instance_terminated`` waiter;
* Libcloud: ``get_image``, ``create_node`` N times, ``wait_until_running``;
  then ``list_nodes`` by tag, ``destroy_node`` N times, and ``list_nodes`` until
  they are terminated.

The waits poll every 0.05 s on every side (moto runs an instance at once).
The front answers as EC2 where moto 5.2 does not and Libcloud depends on it
(an unpaginated DescribeInstances whole, EC2's XML namespace; see
``_aws_server.py``). ``--profile`` runs one vmkit deploy and destroy per N
under pyinstrument instead of the comparison.

What to look for: vmkit's requests do not grow with N, its create time stays
near the floor's, and Libcloud pays one request per node each way.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import boto3
from _aws_server import CREDENTIALS, REGION, AwsServer
from _report import (
    Spread,
    Targets,
    heading,
    options,
    profiled,
    ratio,
    rotated,
    rounds_of,
    table,
    timed,
)
from libcloud.compute.base import NodeImage, NodeSize
from libcloud.compute.drivers.ec2 import EC2NodeDriver

import vmkit
from vmkit.catalog import resolve_image
from vmkit.providers.aws.translate import REPLICAS_TAG

WORKLOAD = "bench"
POLL = 0.05
TAG = "vmkit-workload"


def workload(replicas: int) -> vmkit.Workload:
    return vmkit.Workload(name=WORKLOAD, image="nginx:1.27", ports=[80], replicas=replicas)


@dataclass(frozen=True)
class Launch:
    """What every side launches, taken from vmkit's own plan (same AMI, type,
    user data, disk and tags), so that the sides do the same work."""

    parameter: str
    body: Mapping[str, Any]

    @property
    def image(self) -> str:
        return str(self.body["ImageId"])

    @property
    def instance_type(self) -> str:
        return str(self.body["InstanceType"])


def launch_of(server: AwsServer, replicas: int) -> Launch:
    """vmkit's RunInstances body for ``replicas`` (read with plan(), on a throwaway account)."""
    aws = vmkit.connect("aws", endpoint_url=server.fresh(), region=REGION, **CREDENTIALS)
    request = aws.plan(workload(replicas)).requests[0]
    body = {k: v for k, v in request.body.items() if k not in ("SecurityGroups", "ClientToken")}
    parameter = resolve_image("aws", workload(replicas).os_image).value
    return Launch(parameter, body)


@dataclass
class Side:
    """One way of doing the work, and what it measured."""

    key: str
    create_shown: str
    destroy_shown: str
    create: Callable[[str, int, Launch], Any]
    destroy: Callable[[Any, int], None]
    create_walls: Spread = field(default_factory=Spread)
    destroy_walls: Spread = field(default_factory=Spread)
    create_requests: list[Counter[str]] = field(default_factory=list)
    destroy_requests: list[Counter[str]] = field(default_factory=list)


# ------------------------------------------------------------------- vmkit


def vmkit_create(url: str, replicas: int, launch: Launch) -> Any:
    aws = vmkit.connect("aws", endpoint_url=url, region=REGION, poll_interval=POLL, **CREDENTIALS)
    machines = aws.deploy(workload(replicas))
    assert len(machines) == replicas
    assert all(m.state == vmkit.MachineState.RUNNING for m in machines)
    return aws


def vmkit_destroy(aws: Any, replicas: int) -> None:
    gone = aws.destroy(WORKLOAD)
    assert len(gone) == replicas


# ------------------------------------------------------------------- boto3


def boto3_create(url: str, replicas: int, launch: Launch) -> Any:
    ec2 = boto3.client("ec2", endpoint_url=url, region_name=REGION, **CREDENTIALS)
    ssm = boto3.client("ssm", endpoint_url=url, region_name=REGION, **CREDENTIALS)
    image = ssm.get_parameter(Name=launch.parameter)["Parameter"]["Value"]
    body = {**launch.body, "ImageId": image, "MinCount": replicas, "MaxCount": replicas}
    reservation = ec2.run_instances(**body, ClientToken=str(uuid.uuid4()))
    ids = [i["InstanceId"] for i in reservation["Instances"]]
    # Waiter "instance_running": DescribeInstances until every one is running
    # (botocore/data/ec2/2016-11-15/waiters-2.json), Delay in seconds.
    ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": POLL})
    assert len(ids) == replicas
    return ec2


def boto3_destroy(ec2: Any, replicas: int) -> None:
    filters = [
        {"Name": f"tag:{TAG}", "Values": [WORKLOAD]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    found = ec2.describe_instances(Filters=filters)["Reservations"]
    ids = [i["InstanceId"] for r in found for i in r["Instances"]]
    assert len(ids) == replicas
    ec2.terminate_instances(InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": POLL})


# ---------------------------------------------------------------- Libcloud


def libcloud_create(url: str, replicas: int, launch: Launch) -> Any:
    endpoint = urlsplit(url)
    # EC2NodeDriver(key, secret, secure, host, port, region, signature_version):
    # libcloud/compute/drivers/ec2.py (apache/libcloud). Version 4 signing puts
    # the service in the Authorization header, which is how moto's server
    # tells EC2 from S3 (with version 2 it answers as S3).
    driver = EC2NodeDriver(
        CREDENTIALS["aws_access_key_id"],
        CREDENTIALS["aws_secret_access_key"],
        secure=False,
        host=endpoint.hostname,
        port=endpoint.port,
        region=REGION,
        signature_version="4",
    )
    image: NodeImage = driver.get_image(launch.image)
    size: NodeSize = next(s for s in driver.list_sizes() if s.id == launch.instance_type)
    # Each node is named (its Name tag) by create_node; the launch's list of
    # replicas describes one batched launch, which Libcloud does not make.
    tags = {
        t["Key"]: t["Value"]
        for t in launch.body["TagSpecifications"][0]["Tags"]
        if t["Key"] not in ("Name", REPLICAS_TAG)
    }
    disks = [
        {**d, "Ebs": {k: str(v).lower() for k, v in d["Ebs"].items()}}
        for d in launch.body["BlockDeviceMappings"]
    ]
    nodes = [
        driver.create_node(
            name=f"{WORKLOAD}-{i}",
            size=size,
            image=image,
            ex_userdata=launch.body["UserData"],
            ex_metadata=tags,
            ex_blockdevicemappings=disks,
        )
        for i in range(replicas)
    ]
    driver.wait_until_running(nodes, wait_period=POLL, ssh_interface="private_ips")
    return driver


def libcloud_destroy(driver: Any, replicas: int) -> None:
    nodes = driver.list_nodes(
        ex_filters={f"tag:{TAG}": WORKLOAD, "instance-state-name": ["pending", "running"]}
    )
    assert len(nodes) == replicas
    for node in nodes:
        driver.destroy_node(node)
    ids = [n.id for n in nodes]
    while any(n.state != "terminated" for n in driver.list_nodes(ex_node_ids=ids)):
        time.sleep(POLL)


SIDES = (
    ("vmkit", "connect('aws').deploy(workload)", "destroy(workload.name)",
     vmkit_create, vmkit_destroy),
    ("boto3", "ssm get_parameter, run_instances(MinCount=MaxCount=N), waiter",
     "describe_instances, terminate_instances, waiter", boto3_create, boto3_destroy),
    ("libcloud", "get_image, create_node x N, wait_until_running",
     "list_nodes, destroy_node x N, list_nodes until terminated",
     libcloud_create, libcloud_destroy),
)  # fmt: skip


def measure(server: AwsServer, side: Side, replicas: int, launch: Launch) -> None:
    url = server.fresh()
    wall, handle = timed(lambda: side.create(url, replicas, launch))
    side.create_walls.add(wall)
    side.create_requests.append(server.counts())
    wall, _ = timed(lambda: side.destroy(handle, replicas))
    side.destroy_walls.add(wall)
    side.destroy_requests.append(server.counts())


def count_cell(counts: list[Counter[str]], action: str | None) -> str:
    """The requests of ``action`` (all when None); a range when rounds differ."""
    values = [c[action] if action else sum(c.values()) for c in counts]
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def report(replicas: int, rounds: int, sides: list[Side], targets: Targets) -> None:
    heading(
        f"EC2 fleet, N={replicas}",
        f"moto {version('moto')} behind vmkit's EC2 front in its own process on 127.0.0.1; "
        f"boto3 {version('boto3')}, apache-libcloud {version('apache-libcloud')}; "
        f"{rounds} rounds, each side on a fresh account; seconds.",
    )
    print("sides:")
    for side in sides:
        print(f"  {side.key:<8}  create: {side.create_shown}")
        print(f"  {'':<8}  destroy: {side.destroy_shown}")
    print()
    table(
        ["side", "create", "min-max", "destroy", "min-max", "requests c/d"],
        [
            [
                s.key,
                *s.create_walls.cells(),
                *s.destroy_walls.cells(),
                f"{count_cell(s.create_requests, None)} / {count_cell(s.destroy_requests, None)}",
            ]
            for s in sides
        ],
    )
    by = {s.key: s for s in sides}
    vmkit_side, floor, libcloud = by["vmkit"], by["boto3"], by["libcloud"]
    create_floor = ratio(vmkit_side.create_walls, floor.create_walls)
    create_libcloud = ratio(vmkit_side.create_walls, libcloud.create_walls)
    pairs = [
        ("vmkit / boto3 floor", vmkit_side, floor),
        ("vmkit / libcloud", vmkit_side, libcloud),
        ("libcloud / boto3 floor", libcloud, floor),
    ]
    rows = [
        [f"{name}, create", *ratio(a.create_walls, b.create_walls).cells()] for name, a, b in pairs
    ]
    rows += [
        [f"{name}, destroy", *ratio(a.destroy_walls, b.destroy_walls).cells()]
        for name, a, b in pairs
    ]
    print()
    table(["ratio (round by round)", "median", "min-max"], rows)
    actions = sorted(
        {a for s in sides for c in [*s.create_requests, *s.destroy_requests] for a in c}
    )
    print()
    table(
        ["requests by action", *(f"{s.key} {p}" for s in sides for p in ("create", "destroy"))],
        [
            [a, *(count_cell(r, a) for s in sides for r in (s.create_requests, s.destroy_requests))]
            for a in actions
        ],
    )
    if replicas == 200:
        creates = max(sum(c.values()) for c in vmkit_side.create_requests)
        destroys = max(sum(c.values()) for c in vmkit_side.destroy_requests)
        targets.check(
            "EC2 N=200: vmkit create <= 1.15x boto3 floor",
            f"{create_floor.median:.2f}x",
            create_floor.median <= 1.15,
        )
        targets.check(
            "EC2 N=200: vmkit create <= 0.55x Libcloud",
            f"{create_libcloud.median:.2f}x",
            create_libcloud.median <= 0.55,
        )
        targets.check(
            "EC2 N=200: vmkit <= 10 requests to create (set-up included)",
            f"{creates} requests",
            creates <= 10,
        )
        targets.check(
            "EC2 N=200: vmkit <= 5 requests to destroy", f"{destroys} requests", destroys <= 5
        )


def profile(server: AwsServer, replicas: int) -> None:
    """One vmkit deploy and destroy of ``replicas`` under the profiler (after a warm-up)."""
    launch = launch_of(server, replicas)
    measure(server, Side(*SIDES[0]), 2, launch)
    url = server.fresh()
    aws = profiled(f"vmkit deploy, EC2 N={replicas}", lambda: vmkit_create(url, replicas, launch))
    profiled(f"vmkit destroy, EC2 N={replicas}", lambda: vmkit_destroy(aws, replicas))


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=7)
    parser.add_argument("--replicas", default="10,50,200", help="comma-separated N")
    parser.add_argument(
        "--large-rounds", type=int, default=5, help="rounds when N >= 200 (at least 5)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="instead: profile one vmkit deploy and destroy"
    )
    args = parser.parse_args()
    rounds = rounds_of(args)
    counts = [int(n) for n in str(args.replicas).split(",")]
    targets = Targets("aws")
    with AwsServer() as server:
        if args.profile:
            for replicas in counts:
                profile(server, replicas)
            return
        for replicas in counts:
            launch = launch_of(server, replicas)
            sides = [Side(*spec) for spec in SIDES]
            # A warm-up of each side, not counted: imports, the SDKs' models, connections.
            for side in sides:
                measure(server, side, min(replicas, 2), launch)
                side.create_walls, side.destroy_walls = Spread(), Spread()
                side.create_requests.clear()
                side.destroy_requests.clear()
            # Fewer rounds for a large N: a round of N=200 takes ~15 s on two cores.
            times = max(5, args.large_rounds) if replicas >= 200 else rounds
            for round_ in range(times):
                for side in rotated(sides, round_):
                    measure(server, side, replicas, launch)
            report(replicas, times, sides, targets)
    targets.report(args.json)


if __name__ == "__main__":
    main()
