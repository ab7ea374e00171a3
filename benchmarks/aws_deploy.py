"""Deploy 20 replicas on the simulated AWS (moto, in-process) and report the
API calls it took, by operation, and the wall time.

    python benchmarks/aws_deploy.py [--replicas 20]

What to look for: one ``ec2:RunInstances`` whatever the replica count, one
``ec2:CreateTags`` per replica, and one ``ec2:DescribeInstances`` per poll
round (never one per machine).
"""

from __future__ import annotations

import argparse

from _lifecycle import deploy_and_destroy, print_table

import vmkit
from vmkit.testing.sim import simulated_aws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=20)
    replicas = parser.parse_args().replicas

    with simulated_aws() as config:
        aws = vmkit.connect("aws", **config)
        workload = vmkit.Workload(name="bench", image="nginx:1.27", ports=[80], replicas=replicas)
        measured = deploy_and_destroy(aws, workload)

    assert len(measured.machines) == replicas
    print(f"{replicas} replicas on simulated AWS (moto {_moto_version()})\n")
    print_table(
        measured.deploy_calls,
        measured.destroy_calls,
        total="total API calls",
        walls=(measured.deploy_wall, measured.destroy_wall),
    )


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


if __name__ == "__main__":
    main()
