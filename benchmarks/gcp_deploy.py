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

from _lifecycle import deploy_and_destroy, print_table

import vmkit
from vmkit.testing.fakes.gce.sim import simulated_gcp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    replicas = parser.parse_args().replicas

    with simulated_gcp(operation_delay=0.2, transition_delay=0.5) as config:
        gcp = vmkit.connect("gcp", **{**config, "poll_interval": 0.25})
        workload = vmkit.Workload(name="bench", image="nginx:1.27", ports=[80], replicas=replicas)
        measured = deploy_and_destroy(gcp, workload)

    assert len(measured.machines) == replicas
    print(f"{replicas} replicas on simulated Compute Engine (google-cloud-compute {_version()})\n")
    print_table(
        measured.deploy_calls,
        measured.destroy_calls,
        total="total API requests",
        walls=(measured.deploy_wall, measured.destroy_wall),
    )


def _version() -> str:
    from importlib.metadata import version

    return version("google-cloud-compute")


if __name__ == "__main__":
    main()
