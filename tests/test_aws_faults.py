"""vmkit's EC2 backend under faults, over HTTP, with ClientToken honoured.

The backend talks to moto_server through :class:`vmkit.testing.fakes.aws.AwsFront`,
which loses answers after moto committed and throttles or fails requests as
EC2 does, so what is checked is what a user would see on AWS: no duplicate
instance, a deploy that survives a throttling storm, and a bounded failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import vmkit
from vmkit.providers.aws.translate import instance_replica
from vmkit.testing.fakes.aws import AwsFront, aws_front
from vmkit.testing.faults import FaultPlan


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan(seed=20261127)


@pytest.fixture
def front(plan: FaultPlan) -> Iterator[AwsFront]:
    with aws_front(faults=plan) as running:
        yield running


def workload(name: str = "web", replicas: int = 10) -> vmkit.Workload:
    return vmkit.Workload(name=name, replicas=replicas, image="nginx:1.27", ports=[80])


def alive(front: AwsFront, name: str) -> dict[str, int | None]:
    """Instance id -> replica of the workload's instances that still exist, from moto
    (the replica as EC2's record gives it: see ``instance_replica``)."""
    found = {}
    for item in every_instance(front):
        tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
        if tags.get("vmkit-workload") == name and item["State"]["Name"] != "terminated":
            found[item["InstanceId"]] = instance_replica(item)
    return found


def every_instance(front: AwsFront) -> list[dict[str, Any]]:
    """All instances moto holds, straight from moto (no front, no faults)."""
    host, port = front.upstream
    ec2 = boto3.client(
        "ec2",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    reservations = ec2.describe_instances()["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_deploy_under_lost_answers_and_errors_makes_no_duplicate(
    front: AwsFront, plan: FaultPlan
) -> None:
    dropped = plan.drop_responses(count=1, path="^/ec2/RunInstances$")
    # The random failures spare RunInstances, so that it is sent exactly twice:
    # once lost after the launch, once replayed.
    others = "^(?!/ec2/RunInstances$)"
    throttled = plan.fail(503, count=None, rate=0.1, path=others)
    failed = plan.fail(500, count=None, rate=0.1, path=others)
    aws = vmkit.connect("aws", **front.config(), retry_attempts=12)

    started = time.monotonic()
    aws.deploy(workload(replicas=10))
    elapsed = time.monotonic() - started

    calls = dict(aws.api_calls)
    report = (
        f"api_calls={calls}, front={dict(front.requests)}, replays={front.replays}, "
        f"faults: dropped={dropped.fired} throttled={throttled.fired} failed={failed.fired}, "
        f"{elapsed:.1f}s"
    )
    machines = aws.list("web")
    instances = every_instance(front)
    assert len(machines) == 10, report
    assert sorted(m.replica for m in machines) == list(range(10)), report
    assert len(instances) == 10, report  # nothing launched twice, nothing orphaned
    assert len({i["InstanceId"] for i in instances}) == 10, report
    # The faults did happen: the lost answer was retried into a replay.
    assert dropped.fired == 1, report
    assert front.replays >= 1, report
    assert throttled.fired + failed.fired > 0, report
    assert calls["ec2:RunInstances"] == 2, report


def test_a_throttling_storm_passes_within_the_retry_budget(
    front: AwsFront, plan: FaultPlan
) -> None:
    aws = vmkit.connect("aws", **front.config(), retry_attempts=12, retry_timeout=60)
    storm = plan.fail(503, count=None)
    calm = threading.Timer(2.0, plan.clear)
    started = time.monotonic()
    calm.start()
    try:
        aws.deploy(workload(replicas=2))
    finally:
        calm.cancel()
    elapsed = time.monotonic() - started

    assert storm.fired > 0
    assert len(aws.list("web")) == 2
    assert len(every_instance(front)) == 2
    assert 2.0 <= elapsed < 60, f"{elapsed:.1f}s, api_calls={dict(aws.api_calls)}"


def test_endless_throttling_raises_throttled_within_the_budget(
    front: AwsFront, plan: FaultPlan
) -> None:
    aws = vmkit.connect("aws", **front.config(), retry_timeout=1.5)
    plan.fail(503, count=None)
    started = time.monotonic()
    with pytest.raises(vmkit.Throttled) as caught:
        aws.deploy(workload(replicas=2))
    elapsed = time.monotonic() - started

    assert "RequestLimitExceeded" in str(caught.value)
    # The budget bounds the waits; one more call's time is all that may pass it.
    assert elapsed < 5.0, f"{elapsed:.1f}s"
    assert every_instance(front) == []


SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0k7OBQjG0l8eW2C/cjV3ZY7H1k6N5kpT0mh1p8W0m me@host"


@pytest.mark.parametrize(
    "action",
    [
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "CreateTags",
        "TerminateInstances",
        "DeleteSecurityGroup",
        "DeleteKeyPair",
        "ImportKeyPair",
        "RevokeSecurityGroupIngress",
    ],
)
def test_a_lost_answer_of_any_write_is_survived(
    front: AwsFront, plan: FaultPlan, action: str
) -> None:
    aws = vmkit.connect("aws", **front.config(), retry_timeout=10)
    if action == "CreateTags":
        # vmkit tags instances one by one only where answers lack AmiLaunchIndex.
        front.hide_launch_index()
    lost = plan.drop_responses(count=1, path=f"^/ec2/{action}$")
    for ports in ([80], [443]):  # the second deploy revokes 80 and authorizes 443
        aws.deploy(
            vmkit.Workload(
                name="web", replicas=1, image="nginx:1.27", ports=ports, ssh_public_key=SSH_KEY
            )
        )
    aws.destroy("web")

    assert lost.fired == 1, f"{action} was never called: {dict(aws.api_calls)}"
    assert aws.api_calls[f"ec2:{action}"] >= 2
    assert aws.list() == []
    assert [i for i in every_instance(front) if i["State"]["Name"] != "terminated"] == []


def test_a_short_zone_keeps_what_fits_and_names_the_rest_even_with_lost_answers(
    front: AwsFront, plan: FaultPlan
) -> None:
    aws = vmkit.connect("aws", **front.config(), retry_timeout=10)
    lost = plan.drop_responses(count=None, each=True, path="^/ec2/RunInstances$")
    front.limit_capacity(4)

    with pytest.raises(vmkit.QuotaExceeded) as caught:
        aws.deploy(workload("web", replicas=6))

    error = caught.value
    assert sorted(error.failed) == ["web-4", "web-5"]
    assert all("InsufficientInstanceCapacity" in why for why in error.failed.values())
    assert "launched 4 of 6" in error.failed["web-4"]
    # The all-or-nothing request was refused; the one for what fits launched
    # four, and its lost answer was replayed, not launched again.
    assert lost.fired == 2
    assert front.replays == 1
    assert sorted(alive(front, "web").values()) == [0, 1, 2, 3]
    front.limit_capacity(None)
    assert [m.name for m in aws.deploy(workload("web", replicas=6))] == [
        f"web-{i}" for i in range(6)
    ]
    assert sorted(alive(front, "web").values()) == list(range(6))


def test_atomic_deploy_in_a_short_zone_leaves_nothing(front: AwsFront) -> None:
    aws = vmkit.connect("aws", **front.config())
    front.limit_capacity(2)
    with pytest.raises(vmkit.QuotaExceeded):
        aws.deploy(workload("web", replicas=3), atomic=True)
    assert alive(front, "web") == {}
    assert aws.gc(dry_run=True) == []


def test_destroy_of_a_protected_instance_fails_naming_it(front: AwsFront) -> None:
    aws = vmkit.connect("aws", **front.config(), timeout=5)
    machines = aws.deploy(workload("web", replicas=3))
    ec2 = boto3.client(
        "ec2",
        endpoint_url=front.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ec2.modify_instance_attribute(InstanceId=machines[1].id, DisableApiTermination={"Value": True})

    with pytest.raises(vmkit.ProviderError, match="web-1") as caught:
        aws.destroy("web")

    assert "OperationNotPermitted" in str(caught.value)
    # The others are terminated all the same; the protected one and the group stay.
    assert alive(front, "web") == {machines[1].id: 1}
    ec2.modify_instance_attribute(InstanceId=machines[1].id, DisableApiTermination={"Value": False})
    aws.destroy("web")
    assert alive(front, "web") == {}
    assert aws.gc(dry_run=True) == []


# ------------------------------------------------------- replica identity


def by_action(front: AwsFront) -> dict[str, int]:
    """The requests the front served since the last call, by ``service:Action``."""
    with front.lock:
        counts = {key.split(" ", 1)[1]: n for key, n in front.requests.items()}
        front.requests.clear()
    return dict(sorted(counts.items()))


def test_two_hundred_replicas_take_eight_requests_and_five_to_destroy(front: AwsFront) -> None:
    aws = vmkit.connect("aws", **front.config())
    by_action(front)
    machines = aws.deploy(workload("fleet", replicas=200))
    created = by_action(front)
    gone = aws.destroy("fleet")
    destroyed = by_action(front)

    assert [m.name for m in machines] == [f"fleet-{i}" for i in range(200)]
    assert len(gone) == 200
    # The launch names every replica (vmkit-replicas + AmiLaunchIndex): no
    # CreateTags; a first deploy creates its group without looking it up.
    assert created == {
        "ec2:AuthorizeSecurityGroupIngress": 1,
        "ec2:CreateSecurityGroup": 1,
        "ec2:DescribeImages": 1,
        "ec2:DescribeInstanceTypeOfferings": 1,
        "ec2:DescribeInstances": 2,
        "ec2:RunInstances": 1,
        "ssm:GetParameter": 1,
    }
    # The group comes from the instances' own records; no key pair to look for.
    assert destroyed == {
        "ec2:DeleteSecurityGroup": 1,
        "ec2:DescribeInstances": 3,
        "ec2:TerminateInstances": 1,
    }
    assert alive(front, "fleet") == {}
    assert aws.gc(dry_run=True) == []


LIST_IN_ANOTHER_PROCESS = """
import json, sys
import vmkit
config = json.loads(sys.argv[1])
aws = vmkit.connect("aws", **config)
spec = vmkit.Workload(name="web", replicas=int(sys.argv[2]), image="nginx:1.27", ports=[80])
plan = aws.plan(spec)
print(json.dumps({
    "machines": [[m.name, m.replica, m.id] for m in aws.list("web")],
    "changes": plan.changes,
    "requests": len(plan.requests),
    "orphans": [o.id for o in aws.gc("web", dry_run=True)],
}))
"""


def in_another_process(front: AwsFront, replicas: int) -> dict[str, Any]:
    """What a second process, with its own connection, sees of the fleet "web"."""
    done = subprocess.run(
        [sys.executable, "-c", LIST_IN_ANOTHER_PROCESS, json.dumps(front.config()), str(replicas)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("numbered", [True, False], ids=["launch-index", "no-launch-index"])
def test_another_process_finds_every_replica_and_creates_nothing(
    front: AwsFront, numbered: bool
) -> None:
    # Without AmiLaunchIndex in the answers (an EC2-compatible endpoint that
    # lacks it), vmkit tags each instance with its replica instead.
    front.hide_launch_index(not numbered)
    aws = vmkit.connect("aws", **front.config())
    machines = aws.deploy(workload(replicas=5))
    tagged = aws.api_calls["ec2:CreateTags"]

    seen = in_another_process(front, 5)

    assert tagged == (0 if numbered else 5)
    assert seen["machines"] == [[f"web-{m.replica}", m.replica, m.id] for m in machines]
    assert (seen["changes"], seen["requests"], seen["orphans"]) == (False, 0, [])
    assert sorted(alive(front, "web").values()) == list(range(5))
    # Scaling up from the other process creates only the missing replicas.
    assert in_another_process(front, 7)["requests"] == 1
    assert [m.name for m in aws.deploy(workload(replicas=7))] == [f"web-{i}" for i in range(7)]
    assert sorted(alive(front, "web").values()) == list(range(7))


@pytest.mark.parametrize("numbered", [True, False], ids=["launch-index", "no-launch-index"])
def test_racing_deploys_end_with_one_instance_per_replica(front: AwsFront, numbered: bool) -> None:
    front.hide_launch_index(not numbered)
    spec = workload("race", replicas=4)
    first, second = (vmkit.connect("aws", **front.config()) for _ in range(2))
    plans = [first.plan(spec), second.plan(spec)]  # both plan before either creates
    results: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def deploy(index: int, provider: Any) -> None:
        barrier.wait()
        results[index] = provider.apply(plans[index])

    threads = [threading.Thread(target=deploy, args=(i, p)) for i, p in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [[m.name for m in r] for r in results] == [[f"race-{i}" for i in range(4)]] * 2
    left = alive(front, "race")
    assert sorted(left.values()) == list(range(4))
    # What is left is what a deploy returned: the survivors (oldest, then smallest id).
    assert set(left) <= {m.id for r in results for m in r}
    assert not first.plan(spec).changes
