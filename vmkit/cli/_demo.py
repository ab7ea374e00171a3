"""``vmkit demo``: one workload through its whole life on simulated clouds.

Each target is a simulated cloud (a context manager yielding the provider's
connect() config) and the provider to connect to it. The demo deploys the
workload on every target, shows one fleet table across them, then on each
target stops and starts a machine, snapshots it, lists the snapshots and
destroys the fleet, checking that nothing is left. Adding a cloud to the
demo is adding a target to :func:`demo_targets`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from vmkit.cli._output import fleet_table, snapshots_table
from vmkit.cli._progress import deploy_with_progress
from vmkit.errors import ConfigError, ProviderError
from vmkit.machine import Machine
from vmkit.provider import Provider
from vmkit.registry import connect
from vmkit.spec import Workload

__all__ = ["DemoTarget", "demo_targets", "run_demo"]

_TESTING_HINT = 'the demo needs the simulators: pip install "vmkit[all,testing]"'


@dataclass(frozen=True)
class DemoTarget:
    """A simulated cloud the demo runs on."""

    label: str
    provider: str
    simulate: Callable[[], AbstractContextManager[dict[str, Any]]]


def demo_targets() -> list[DemoTarget]:
    """The simulated clouds of the demo, in the order they are shown."""
    try:
        from vmkit.testing.sim import SIMULATORS
    except ImportError as exc:
        raise ConfigError(f"{_TESTING_HINT} ({exc})") from exc
    labels = {
        "aws": "aws (moto)",
        "gcp": "gcp (fake)",
        "azure": "azure (fake)",
        "kubernetes": "kubernetes (fake)",
    }
    return [DemoTarget(labels[name], name, SIMULATORS[name]) for name in labels]


def _enter(stack: ExitStack, target: DemoTarget) -> dict[str, Any]:
    """Start ``target``'s simulation on ``stack``; a missing simulator is a ConfigError."""
    try:
        return stack.enter_context(target.simulate())
    except ImportError as exc:
        raise ConfigError(f"{_TESTING_HINT} ({exc})") from exc


class _Demo:
    def __init__(self, console: Console, workload: Workload) -> None:
        self.console = console
        self.workload = workload

    def say(self, message: str) -> None:
        self.console.print(Text(message))

    def heading(self, message: str) -> None:
        self.console.print()
        self.console.print(Text(message, style="bold"))

    def lifecycle(self, label: str, provider: Provider, machine: Machine) -> None:
        """Stop, start and snapshot one machine, as far as the provider can."""
        self.heading(f"{label}: lifecycle of {machine.name}")
        capabilities = provider.capabilities
        if {"stop", "start"} <= capabilities:
            machine = machine.stop()
            self.say(f"stopped {machine.name} ({machine.id}): {machine.state.value}")
            machine = machine.start()
            self.say(f"started {machine.name} ({machine.id}): {machine.state.value}")
        else:
            self.say(f"{provider.name} cannot stop machines: skipped")
        if "snapshot" in capabilities:
            snap = machine.snapshot(f"{self.workload.name}-demo")
            self.say(f"snapshot {snap.name} ({snap.id}) of {machine.name}: {snap.state}")
            self.console.print(snapshots_table(provider.snapshots(self.workload.name)))
        else:
            self.say(f"{provider.name} cannot snapshot machines: skipped")

    def destroy(self, label: str, provider: Provider) -> None:
        """Destroy the fleet with its snapshots and check nothing is left."""
        name = self.workload.name
        self.heading(f"{label}: destroy {name}")
        snapshots = provider.snapshots(name)
        removed = provider.destroy(name, snapshots=True)
        machines = ", ".join(f"{m.name} ({m.id})" for m in removed) or "none"
        self.say(f"removed {len(removed)} machine(s): {machines}")
        self.say(f"removed {len(snapshots)} snapshot(s)")
        left = provider.list(name)
        left_snapshots = provider.snapshots(name)
        if left or left_snapshots:
            raise ProviderError(
                f"demo: {len(left)} machine(s) and {len(left_snapshots)} snapshot(s) of "
                f"{name} are still on {label}",
                provider=provider.name,
            )
        self.say(f"nothing left of {name} on {label}")


def run_demo(
    spec: Path,
    *,
    console: Console,
    progress: Console,
    targets: list[DemoTarget] | None = None,
) -> None:
    """Run the demo with the workload in ``spec`` on ``targets`` (all by default).

    Output goes to ``console``, deploy progress to ``progress``. Raises what
    the operations raise; the simulations are torn down either way.
    """
    workload = Workload.from_yaml(spec)
    demo = _Demo(console, workload)
    with ExitStack() as stack:
        connected: list[tuple[DemoTarget, Provider]] = []
        for target in targets if targets is not None else demo_targets():
            config = _enter(stack, target)
            connected.append((target, connect(target.provider, **config)))
        fleet: dict[str, list[Machine]] = {}
        for target, provider in connected:
            demo.heading(f"{target.label}: deploy {workload.name} x{workload.replicas}")
            fleet[target.label] = deploy_with_progress(provider, workload, console=progress)
        labels = {m.id: label for label, machines in fleet.items() for m in machines}
        demo.heading("fleet")
        everything = [m for machines in fleet.values() for m in machines]
        console.print(fleet_table(everything, target_of=lambda m: labels[m.id]))
        for target, provider in connected:
            if fleet[target.label]:
                demo.lifecycle(target.label, provider, fleet[target.label][0])
        for target, provider in connected:
            demo.destroy(target.label, provider)
