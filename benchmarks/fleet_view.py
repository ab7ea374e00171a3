"""Time the fleet view across the four simulated clouds against listing each
target alone; print the medians side by side, then the fleet table once.

    python benchmarks/fleet_view.py [--rounds 15] [--replicas 3] [--latency 0.05]

``vmkit sim serve`` runs in its own process (the clouds apart from their
client, as on a real network), with ``--latency`` seconds before every API
answer (a real cloud's round trip; 0 for none), a small workload is deployed
on each of its four targets, then each round times two ways of listing,
each over the four targets and for each target alone (the same code path,
one target):

- a new view: ``vmkit.fleet()`` and ``vmkit.fleet(targets=[t])``, which
  connect to every target (build its SDK clients) and list it, what one
  ``vmkit ls`` does;
- a view listed again: ``view.refresh()`` of views made in the warm-up, which
  list through the providers those views connected, what a script or
  ``vmkit ls --watch`` does from its second listing on.

A warm-up round, not counted, imports the SDKs.

What to look for: the fleet view lists the targets concurrently, so its
wall time is close to the slowest single target's, well under the sum of
the four. With no latency the simulators answer in microseconds and a
listing is all client CPU (building SDK clients, parsing answers), which
threads of one Python process cannot overlap: the fleet view then costs
about the sum.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _report import Spread, Targets, heading, options, profiled, ratio, rounds_of, table

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


@dataclass
class Listings:
    """The wall times of one way of listing: the fleet, and each target alone."""

    fleet: Spread = field(default_factory=Spread)
    single: dict[str, Spread] = field(default_factory=lambda: {t: Spread() for t in TARGETS})

    def sums(self, rounds: int) -> Spread:
        return Spread([sum(self.single[t].values[i] for t in TARGETS) for i in range(rounds)])

    def slowest(self, rounds: int) -> Spread:
        return Spread([max(self.single[t].values[i] for t in TARGETS) for i in range(rounds)])


def timed(call: Callable[[], vmkit.Fleet], expected: int) -> float:
    """Seconds one listing took; it must list every machine with no error."""
    started = time.perf_counter()
    view = call()
    wall = time.perf_counter() - started
    if not view.ok or len(view.machines) != expected:
        raise SystemExit(f"unexpected fleet: {view.to_records()}")
    return wall


def profile(rounds: int, everything: int) -> None:
    """Where a fleet listing's time goes: the CPU time of ``vmkit.fleet()`` against
    its wall time, then what each of its threads does (connect, list), run one
    target after the other under the profiler (which sees one thread only)."""
    cpu, wall = Spread(), Spread()
    for _ in range(rounds):
        started = time.process_time()
        wall.add(timed(vmkit.fleet, everything))
        cpu.add(time.process_time() - started)
    print(
        f"vmkit.fleet(): wall {wall.cells(1000, 1)[0]} ms, CPU of the process "
        f"{cpu.cells(1000, 1)[0]} ms (medians of {rounds})"
    )
    view = vmkit.fleet()
    cpu, wall = Spread(), Spread()
    for _ in range(rounds):
        started = time.process_time()
        wall.add(timed(view.refresh, everything))
        cpu.add(time.process_time() - started)
    print(
        f"view.refresh(): wall {wall.cells(1000, 1)[0]} ms, CPU of the process "
        f"{cpu.cells(1000, 1)[0]} ms (medians of {rounds})"
    )

    def one_by_one() -> None:
        for _ in range(rounds):
            for target in TARGETS:
                vmkit.connect(target).list(None)

    profiled(f"connect(target).list() for each target in turn, x {rounds}", one_by_one)


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=15)
    parser.add_argument("--replicas", type=int, default=3, help="replicas on each target")
    parser.add_argument(
        "--latency", type=float, default=0.05, help="seconds before every API answer"
    )
    parser.add_argument(
        "--profile", action="store_true", help="instead: profile vmkit.fleet(), once per round"
    )
    args = parser.parse_args()
    rounds, replicas = rounds_of(args), args.replicas
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
            # The warm-up; its views are the ones listed again in every round.
            view = vmkit.fleet()
            timed(view.refresh, everything)
            alone = {target: vmkit.fleet(targets=[target]) for target in TARGETS}
            for target in TARGETS:
                timed(alone[target].refresh, replicas)

            if args.profile:
                profile(rounds, everything)
                return
            new, again = Listings(), Listings()
            # Interleaved, so that a slow moment of the machine weighs on every side.
            for _ in range(rounds):
                new.fleet.add(timed(vmkit.fleet, everything))
                for target in TARGETS:
                    single = timed(functools.partial(vmkit.fleet, targets=[target]), replicas)
                    new.single[target].add(single)
                again.fleet.add(timed(view.refresh, everything))
                for target in TARGETS:
                    again.single[target].add(timed(alone[target].refresh, replicas))
            final = vmkit.fleet()
        finally:
            for provider in providers.values():
                provider.destroy(workload.name)

    heading(
        "Fleet view",
        f"vmkit.fleet() over the {len(TARGETS)} targets of `vmkit sim serve` (its own "
        f"process), {replicas} replicas each, {args.latency * 1000:g} ms before every API "
        f"answer; {rounds} rounds, in each the fleet then each target alone, first as a "
        "new view, then as a view listed again; ms.",
    )
    print("listings:")
    print(f"  {'':<18}  {'new view':<32}  listed again")
    print(f"  {'<target>':<18}  {'vmkit.fleet(targets=[<target>])':<32}  view.refresh()")
    print(f"  {'fleet (concurrent)':<18}  {'vmkit.fleet()':<32}  view.refresh()")
    print()
    rows = [[t, *new.single[t].cells(1000, 1), *again.single[t].cells(1000, 1)] for t in TARGETS]
    rows += [
        ["sum of the 4", *new.sums(rounds).cells(1000, 1), *again.sums(rounds).cells(1000, 1)],
        ["fleet (concurrent)", *new.fleet.cells(1000, 1), *again.fleet.cells(1000, 1)],
    ]
    table(["listing", "new view", "min-max", "listed again", "min-max"], rows)
    new_slowest = ratio(new.fleet, new.slowest(rounds))
    again_slowest = ratio(again.fleet, again.slowest(rounds))
    print()
    table(
        ["ratio (round by round)", "new view", "min-max", "listed again", "min-max"],
        [
            [
                "fleet / sum of the 4",
                *ratio(new.fleet, new.sums(rounds)).cells(),
                *ratio(again.fleet, again.sums(rounds)).cells(),
            ],
            ["fleet / slowest single", *new_slowest.cells(), *again_slowest.cells()],
        ],
    )
    print()
    make_console().print(fleet_view(final))
    targets = Targets("fleet")
    targets.check(
        "Fleet view <= 1.3x the slowest single target (new view)",
        f"{new_slowest.median:.2f}x",
        new_slowest.median <= 1.3,
    )
    targets.check(
        "Fleet view <= 1.3x the slowest single target (listed again)",
        f"{again_slowest.median:.2f}x",
        again_slowest.median <= 1.3,
    )
    targets.report(args.json)


if __name__ == "__main__":
    main()
