"""Deploy the example workload, list it and destroy it, on a simulated AWS.

    python examples/deploy_web.py

Needs ``pip install "vmkit[aws,testing]"``; no AWS account: moto simulates
EC2 in this process. Against real AWS, drop ``simulated_aws`` and connect
with ``vmkit.connect("aws", region="us-east-1")``.
"""

from __future__ import annotations

from pathlib import Path

import vmkit
from vmkit.testing.sim import simulated_aws

SPEC = Path(__file__).with_name("web.yaml")


def main() -> None:
    workload = vmkit.Workload.from_yaml(SPEC)
    with simulated_aws() as config:
        aws = vmkit.connect("aws", **config)

        plan = aws.plan(workload)
        print(f"plan: {[(a.replica, a.kind) for a in plan.actions]}")

        machines = aws.deploy(workload)  # waits until every replica runs
        for machine in aws.list(workload=workload.name):
            print(f"{machine.name}  {machine.id}  {machine.state}  {machine.size}")

        again = aws.deploy(workload)  # converges: the same spec changes nothing
        same = [m.id for m in again] == [m.id for m in machines]
        print(f"redeploy kept the same machines: {same}")

        removed = aws.destroy(workload.name)
        print(f"destroyed {len(removed)} machines; left: {aws.list(workload=workload.name)}")


if __name__ == "__main__":
    main()
