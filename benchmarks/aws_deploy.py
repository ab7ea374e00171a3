"""Deploy 20 replicas on the simulated AWS (moto, in-process) and report the
API calls it took, by operation, and the wall time.

    python benchmarks/aws_deploy.py [--replicas 20]

What to look for: one ``ec2:RunInstances`` whatever the replica count, one
``ec2:CreateTags`` per replica, and one ``ec2:DescribeInstances`` per poll
round (never one per machine).
"""

from __future__ import annotations

import argparse
import time

import vmkit
from vmkit.testing.sim import simulated_aws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=20)
    replicas = parser.parse_args().replicas

    with simulated_aws() as config:
        aws = vmkit.connect("aws", **config)
        workload = vmkit.Workload(name="bench", image="nginx:1.27", ports=[80], replicas=replicas)
        started = time.perf_counter()
        machines = aws.deploy(workload)
        deploy_wall = time.perf_counter() - started
        deploy_calls = dict(aws.api_calls)
        aws.api_calls.clear()
        started = time.perf_counter()
        aws.destroy(workload.name)
        destroy_wall = time.perf_counter() - started
        destroy_calls = dict(aws.api_calls)

    assert len(machines) == replicas
    operations = sorted(set(deploy_calls) | set(destroy_calls))
    width = max(len(op) for op in operations)
    print(f"{replicas} replicas on simulated AWS (moto {_moto_version()})\n")
    print(f"{'operation':<{width}}  {'deploy':>6}  {'destroy':>7}")
    print(f"{'-' * width}  {'-' * 6}  {'-' * 7}")
    for op in operations:
        print(f"{op:<{width}}  {deploy_calls.get(op, 0):>6}  {destroy_calls.get(op, 0):>7}")
    print(f"{'-' * width}  {'-' * 6}  {'-' * 7}")
    total_deploy, total_destroy = sum(deploy_calls.values()), sum(destroy_calls.values())
    print(f"{'total API calls':<{width}}  {total_deploy:>6}  {total_destroy:>7}")
    print(f"{'wall time (s)':<{width}}  {deploy_wall:>6.2f}  {destroy_wall:>7.2f}")


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


if __name__ == "__main__":
    main()
