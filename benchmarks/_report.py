"""What every benchmark shares: its options, medians with their spread, ratios
measured side by side, the tables it prints and the targets of issue 8 it checks.

A ratio is taken within each round (both sides ran back to back, on the same
machine in the same moment) and the table shows the median of those ratios
and their range: on a shared, noisy machine that is steadier than a ratio of
two medians taken minutes apart.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def options(description: str, *, rounds: int) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: ``--rounds`` and ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--rounds", type=int, default=rounds, help=f"timed rounds, at least 5 (default {rounds})"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the targets checked as JSON")
    return parser


def rounds_of(args: argparse.Namespace) -> int:
    """The rounds asked for, never fewer than 5."""
    return max(5, int(args.rounds))


def invocation() -> str:
    """The command that is running, as a user would type it from the repository."""
    script = Path(sys.argv[0]).resolve()
    shown = f"benchmarks/{script.name}" if script.parent.name == "benchmarks" else sys.argv[0]
    args, rest = [], list(sys.argv[1:])
    while rest:  # --json only says where run.py collects the targets
        arg = rest.pop(0)
        if arg == "--json":
            rest = rest[1:]
        elif not arg.startswith("--json="):
            args.append(arg)
    return shlex.join(["python", shown, *args])


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` starting at a different one each round, so that no side always
    runs first (on a warm or a cold machine)."""
    start = round_ % len(items)
    return [*items[start:], *items[:start]]


@dataclass
class Spread:
    """Measurements of one figure over the rounds."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def cells(self, scale: float = 1.0, digits: int = 2) -> tuple[str, str]:
        """``(median, "min-max")``, each multiplied by ``scale``."""
        low, high = min(self.values) * scale, max(self.values) * scale
        return f"{self.median * scale:.{digits}f}", f"{low:.{digits}f}-{high:.{digits}f}"


def ratio(numerator: Spread, denominator: Spread) -> Spread:
    """Round by round ``numerator / denominator`` (the two lists are in round order)."""
    return Spread([a / b for a, b in zip(numerator.values, denominator.values, strict=True)])


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    body = [list(r) for r in rows]
    widths = [max(len(str(r[i])) for r in [list(headers), *body]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            f"{cell:<{widths[i]}}" if i == 0 else f"{cell:>{widths[i]}}"
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print(line(row))


def heading(title: str, note: str = "") -> None:
    """The title of a table and the command that produced it."""
    print(f"\n## {title}\n")
    print(f"$ {invocation()}")
    if note:
        print(note)
    print()


@dataclass
class Targets:
    """The targets of issue 8 a benchmark checks, and whether each is met."""

    benchmark: str
    rows: list[dict[str, object]] = field(default_factory=list)

    def check(self, target: str, measured: str, met: bool) -> None:
        self.rows.append({"target": target, "measured": measured, "met": met})

    def report(self, path: str | None) -> None:
        """Print the targets; write them to ``path`` as JSON when given."""
        if not self.rows:
            return
        print()
        table(
            ["target (issue 8)", "measured", "verdict"],
            [
                [str(r["target"]), str(r["measured"]), "met" if r["met"] else "MISSED"]
                for r in self.rows
            ],
        )
        if path:
            entries = [
                {"benchmark": self.benchmark, "command": invocation(), **r} for r in self.rows
            ]
            Path(path).write_text(json.dumps(entries, indent=1))


def deepen_listen_backlog() -> None:
    """Give the fakes' HTTP servers a listen backlog of 128 instead of 5.

    The fakes serve with the standard library's ``ThreadingHTTPServer``, whose
    ``request_queue_size`` is socketserver's default, 5 (Python docs,
    socketserver.BaseServer.request_queue_size). A client opening more
    connections at once overflows it: Linux drops the extra SYNs (counted as
    ``TcpExtListenOverflows``) and the client sends them again after its
    initial retransmission timeout, 1 s (RFC 6298, 2.1). That stall belongs to
    the fake, not to the library measured, and it struck vmkit's concurrent
    EC2 tagging and the pods' concurrent creates at random. 128 is werkzeug's
    backlog (moto's own server). Call it before a fake starts, in the process
    that runs the fake.
    """
    from http.server import ThreadingHTTPServer

    ThreadingHTTPServer.request_queue_size = 128


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``call`` took, and what it returned."""
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def profiled(title: str, call: Callable[[], T]) -> T:
    """Run ``call`` under pyinstrument (of the ``bench`` extra) and print where the
    calling thread's time went; worker threads show as the wait for them."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        return call()
    finally:
        profiler.stop()
        print(f"\n## Profile: {title}\n\n$ {invocation()}\n")
        print(profiler.output_text(unicode=False, color=False))
