"""Run the benchmark suite (or the benchmarks named) and print every table,
then the targets of issue 8 with their verdicts.

    python benchmarks/run.py [import aws kubernetes gcp azure fleet] [--rounds N]

Each benchmark runs in a process of its own (``python benchmarks/<file>``, the
command its tables name), one after the other, so that none pays for another's
imports or shares its interpreter. ``--rounds`` overrides every benchmark's
default (at least 5). The exit status is 1 when a benchmark failed to run;
a missed target is reported, not an error: these are measurements.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import table

HERE = Path(__file__).resolve().parent
#: name -> (file, arguments), in the order the suite runs them.
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "import": ("import_time.py", []),
    "aws": ("aws_deploy.py", ["--replicas", "10,50,200"]),
    "kubernetes": ("kubernetes_deploy.py", ["--replicas", "100"]),
    "gcp": ("gcp_deploy.py", ["--replicas", "100"]),
    "azure": ("azure_deploy.py", ["--replicas", "50"]),
    "fleet": ("fleet_view.py", []),
}


def listen_overflows() -> int | None:
    """Linux's count of connections dropped for a full listen backlog
    (``TcpExtListenOverflows`` in /proc/net/netstat), None elsewhere: a
    benchmark during which it grew waited on SYN retransmissions, not on the
    code it measures."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(fields.get("ListenOverflows", 0))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--rounds", type=int, help="rounds for every benchmark (at least 5)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)

    failed: list[str] = []
    verdicts: list[dict[str, object]] = []
    durations: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="vmkit-bench-") as work:
        for name in names:
            script, extra = BENCHMARKS[name]
            if args.rounds is not None:
                extra = [*extra, "--rounds", str(args.rounds)]
            out = Path(work) / f"{name}.json"
            command = [sys.executable, str(HERE / script), *extra, "--json", str(out)]
            started, dropped = time.perf_counter(), listen_overflows()
            status = subprocess.run(command, check=False).returncode
            after = listen_overflows()
            overflows = "n/a" if after is None or dropped is None else str(after - dropped)
            durations.append([name, f"{time.perf_counter() - started:.0f}", overflows])
            if status != 0:
                failed.append(name)
                print(f"\n{script} failed with status {status}", file=sys.stderr)
            if out.exists():
                verdicts.extend(json.loads(out.read_text()))
            sys.stdout.flush()

    print("\n## Targets of issue 8\n")
    if verdicts:
        table(
            ["target", "measured", "verdict", "command"],
            [
                [str(v["target"]), str(v["measured"]), "met" if v["met"] else "MISSED",
                 str(v["command"])]
                for v in verdicts
            ],
        )  # fmt: skip
    print()
    table(["benchmark", "seconds", "listen overflows"], durations)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
