"""Time the fleet view across the four simulated clouds against listing each
target alone; print the medians side by side, then the fleet table once.

    python benchmarks/fleet_view.py [--rounds 7] [--replicas 3] [--latency 0.05]

``vmkit sim serve`` runs in its own process (the clouds apart from their
client, as on a real network), with ``--latency`` seconds before every API
answer (a real cloud's round trip; 0 for none), a small workload is deployed
on each of its four targets, then each round times ``vmkit.fleet()`` over the four targets
and ``vmkit.fleet(targets=[t])`` for each target alone (the same code path,
one target). A warm-up round, not counted, imports the SDKs.

What to look for: the fleet view lists the targets concurrently, so its
wall time is close to the slowest single target's, well under the sum of
the four. With no latency the simulators answer in microseconds and a
listing is all client CPU (building SDK clients, parsing answers), which
threads of one Python process cannot overlap: the fleet view then costs
about the sum.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import vmkit
from vmkit.cli._output import fleet_view, make_console
from vmkit.testing.serve import SIM_TARGETS

TARGETS = list(SIM_TARGETS.values())
START_TIMEOUT = 120.0
SERVE = (sys.executable, "-m", "vmkit", "sim", "serve", "-o", "json")


@contextmanager
def sim_server(latency: float) -> Iterator[dict[str, str | None]]:
    """``vmkit sim serve`` in a subprocess; yields the client environment it printed."""
    with tempfile.TemporaryDirectory(prefix="fleet-view-") as workdir:
        env_file = Path(workdir) / "sim.env"
        server = subprocess.Popen(
            [*SERVE, "--env-file", str(env_file), "--latency", str(latency)],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not env_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("vmkit sim serve did not start")
                time.sleep(0.05)
            assert server.stdout is not None
            environment: dict[str, str | None] = json.loads(server.stdout.readline())["environment"]
            yield environment
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def apply(environment: dict[str, str | None]) -> None:
    for key, value in environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def timed(call: Callable[[], vmkit.Fleet], expected: int) -> float:
    started = time.perf_counter()
    view = call()
    wall = time.perf_counter() - started
    if not view.ok or len(view.machines) != expected:
        raise SystemExit(f"unexpected fleet: {view.to_records()}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (at least 5)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas on each target")
    parser.add_argument(
        "--latency", type=float, default=0.05, help="seconds before every API answer"
    )
    args = parser.parse_args()
    rounds, replicas = max(5, args.rounds), args.replicas
    workload = vmkit.Workload(
        name="fleet",
        image="nginx:1.27",
        ports=[80],
        resources={"cpu": 1, "memory": "2GiB"},
        replicas=replicas,
    )

    with sim_server(args.latency) as environment:
        apply(environment)
        providers = {target: vmkit.connect(target) for target in TARGETS}
        for provider in providers.values():
            provider.deploy(workload)
        try:
            everything = len(TARGETS) * replicas
            timed(vmkit.fleet, everything)
            for target in TARGETS:
                timed(functools.partial(vmkit.fleet, targets=[target]), replicas)

            fleet_walls: list[float] = []
            single_walls: dict[str, list[float]] = {target: [] for target in TARGETS}
            # Interleaved, so that a slow moment of the machine weighs on both sides.
            for _ in range(rounds):
                fleet_walls.append(timed(vmkit.fleet, everything))
                for target in TARGETS:
                    single = timed(functools.partial(vmkit.fleet, targets=[target]), replicas)
                    single_walls[target].append(single)

            print(
                f"vmkit.fleet() over {len(TARGETS)} simulated targets, {replicas} replicas "
                f"each, {args.latency * 1000:g} ms of API latency; medians of {rounds} rounds "
                "(min-max), in ms\n"
            )
            width = max(len(name) for name in [*TARGETS, "fleet (concurrent)", "sum of the 4"])
            print(f"{'listing':<{width}}  {'median':>7}  {'min-max':>13}")
            print(f"{'-' * width}  {'-' * 7}  {'-' * 13}")
            for target in TARGETS:
                walls = single_walls[target]
                print(
                    f"{target:<{width}}  {statistics.median(walls) * 1000:>7.1f}  "
                    f"{min(walls) * 1000:>6.1f}-{max(walls) * 1000:<6.1f}"
                )
            sums = [sum(single_walls[t][i] for t in TARGETS) for i in range(rounds)]
            slowest = max(statistics.median(single_walls[t]) for t in TARGETS)
            fleet_median = statistics.median(fleet_walls)
            print(f"{'-' * width}  {'-' * 7}  {'-' * 13}")
            print(
                f"{'sum of the 4':<{width}}  {statistics.median(sums) * 1000:>7.1f}  "
                f"{min(sums) * 1000:>6.1f}-{max(sums) * 1000:<6.1f}"
            )
            print(
                f"{'fleet (concurrent)':<{width}}  {fleet_median * 1000:>7.1f}  "
                f"{min(fleet_walls) * 1000:>6.1f}-{max(fleet_walls) * 1000:<6.1f}"
            )
            print()
            print(f"fleet / sum of the 4        {fleet_median / statistics.median(sums):.2f}")
            print(f"fleet / slowest single      {fleet_median / slowest:.2f}")
            print()
            make_console().print(fleet_view(vmkit.fleet()))
        finally:
            for provider in providers.values():
                provider.destroy(workload.name)


if __name__ == "__main__":
    main()
