"""Deploy 50 replicas on the simulated Azure (the Azure fake over HTTP) and report the
API requests it took, by operation, and the wall time.

    python benchmarks/azure_deploy.py [--replicas 50] [--lro-delay 0.05]

Two views of the same run: vmkit's calls (``provider.api_calls``: one per request vmkit
sent, retries included, long-running operations awaited inside one call) and the HTTP
requests the fake served (polls of long-running operations included). What to look for:
one public IP, NIC and VM PUT per replica (Azure has no batch create), creates running
``concurrency`` at a time, and a constant number of listings per poll round.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from _lifecycle import print_table

import vmkit
from vmkit.testing.fakes.azure import AzureFake
from vmkit.testing.fakes.azure.sim import simulated_azure


def _table(title: str, deploy: Counter[str], destroy: Counter[str]) -> None:
    print(f"\n{title}\n")
    print_table(deploy, destroy, total="total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--lro-delay", type=float, default=0.05)
    args = parser.parse_args()

    with (
        AzureFake(lro_delay=args.lro_delay, token="bench-token") as fake,
        simulated_azure(fake=fake) as config,
    ):
        azure = vmkit.connect("azure", **config)
        workload = vmkit.Workload(
            name="bench", image="nginx:1.27", ports=[80], replicas=args.replicas
        )
        started = time.perf_counter()
        machines = azure.deploy(workload)
        deploy_wall = time.perf_counter() - started
        deploy_calls, deploy_http = Counter(azure.api_calls), Counter(fake.requests)
        azure.api_calls.clear()
        started = time.perf_counter()
        azure.destroy(workload.name)
        destroy_wall = time.perf_counter() - started
        destroy_calls = Counter(azure.api_calls)
        destroy_http = Counter(fake.requests) - deploy_http

    assert len(machines) == args.replicas
    print(
        f"{args.replicas} replicas on the simulated Azure "
        f"(long-running operations take {args.lro_delay}s, concurrency {azure.concurrency})"
    )
    _table("vmkit calls (provider.api_calls)", deploy_calls, destroy_calls)
    _table("HTTP requests served by the fake", deploy_http, destroy_http)
    print(f"\nwall time (s): deploy {deploy_wall:.2f}, destroy {destroy_wall:.2f}")


if __name__ == "__main__":
    main()
