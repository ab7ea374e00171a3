"""``vmkit sim``: the simulated clouds as servers, for pipelines with no cloud account."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

__all__ = ["sim"]

#: Seconds between two looks at the stop flag (a signal sets it at once; this
#: only bounds how long the main thread sleeps between looks).
_TICK = 0.5


@click.group()
def sim() -> None:
    """Simulated clouds on 127.0.0.1, to run a pipeline with no cloud account."""


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (handlers restored after)."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_at_once(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


@sim.command()
@click.option(
    "--targets-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the targets file (default: a new temporary directory). An existing "
    "file is overwritten only if vmkit sim wrote it.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the client environment there as KEY=VALUE lines once every cloud serves "
    "(wait for it to exist); removed on exit.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Added before every API answer, as a real cloud's round trip (e.g. 0.05).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["shell", "json"]),
    default="shell",
    show_default=True,
    help="How to print the client environment on stdout: export lines, or one JSON line.",
)
def serve(targets_file: Path | None, env_file: Path | None, latency: float, output: str) -> None:
    """Serve simulated AWS, Compute Engine, Azure and Kubernetes on 127.0.0.1.

    Writes a targets file naming sim-aws, sim-gcp, sim-azure and sim-k8s,
    prints the environment a client needs (VMKIT_CONFIG and the fake AWS
    credentials), then serves until Ctrl-C or SIGTERM and exits 0. Every cloud
    starts empty; nothing is kept when it stops.
    """
    from vmkit.testing.serve import serve_simulated_clouds

    with _stop_on_signals() as stop:
        if env_file is not None:
            # A file left by an earlier run must not look like this one is ready.
            env_file.unlink(missing_ok=True)
        with serve_simulated_clouds(targets_file, latency=latency) as session:
            try:
                if output == "json":
                    click.echo(json.dumps(session.to_dict()))
                else:
                    click.echo(session.shell(), nl=False)
                if env_file is not None:
                    _write_at_once(env_file, session.dotenv())
                names = ", ".join(session.targets)
                click.echo(
                    f"vmkit sim: ready: {names} in {session.targets_file}; "
                    "Ctrl-C or SIGTERM stops it",
                    err=True,
                )
                while not stop.wait(_TICK):
                    pass
            finally:
                if env_file is not None:
                    env_file.unlink(missing_ok=True)
        click.echo("vmkit sim: stopped", err=True)
