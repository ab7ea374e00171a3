"""Deploy 100 replicas on the simulated Compute Engine (the real
google-cloud-compute client against the HTTP fake on 127.0.0.1) and report
the API requests it took, by operation, and the wall time.

    python benchmarks/gcp_deploy.py [--replicas 100]

What to look for: one ``compute:instances.bulkInsert`` whatever the replica
count, its operation waited on with ``zoneOperations.wait``, and one
``compute:instances.list`` per poll round (never one per machine). Deleting
takes one ``instances.delete`` per machine: Compute Engine has no bulk delete.
"""

from __future__ import annotations

import argparse
import time

import vmkit
from vmkit.testing.fakes.gce.sim import simulated_gcp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    replicas = parser.parse_args().replicas

    with simulated_gcp(operation_delay=0.2, transition_delay=0.5) as config:
        gcp = vmkit.connect("gcp", **{**config, "poll_interval": 0.25})
        workload = vmkit.Workload(name="bench", image="nginx:1.27", ports=[80], replicas=replicas)
        started = time.perf_counter()
        machines = gcp.deploy(workload)
        deploy_wall = time.perf_counter() - started
        deploy_calls = dict(gcp.api_calls)
        gcp.api_calls.clear()
        started = time.perf_counter()
        gcp.destroy(workload.name)
        destroy_wall = time.perf_counter() - started
        destroy_calls = dict(gcp.api_calls)

    assert len(machines) == replicas
    operations = sorted(set(deploy_calls) | set(destroy_calls))
    width = max(len(op) for op in operations)
    print(f"{replicas} replicas on simulated Compute Engine (google-cloud-compute {_version()})\n")
    print(f"{'operation':<{width}}  {'deploy':>6}  {'destroy':>7}")
    print(f"{'-' * width}  {'-' * 6}  {'-' * 7}")
    for op in operations:
        print(f"{op:<{width}}  {deploy_calls.get(op, 0):>6}  {destroy_calls.get(op, 0):>7}")
    print(f"{'-' * width}  {'-' * 6}  {'-' * 7}")
    total_deploy, total_destroy = sum(deploy_calls.values()), sum(destroy_calls.values())
    print(f"{'total API requests':<{width}}  {total_deploy:>6}  {total_destroy:>7}")
    print(f"{'wall time (s)':<{width}}  {deploy_wall:>6.2f}  {destroy_wall:>7.2f}")


def _version() -> str:
    from importlib.metadata import version

    return version("google-cloud-compute")


if __name__ == "__main__":
    main()
