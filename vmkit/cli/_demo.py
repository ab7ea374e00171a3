"""``vmkit demo``: one workload through its whole life on simulated clouds.

Each target is a simulated cloud (a context manager yielding the provider's
connect() config) and the provider to connect to it. The demo deploys the
workload on every target, shows one fleet table across them, then on each
VM target stops and starts a machine, snapshots it, lists the snapshots and
rolls the machine back to its snapshot, showing that it keeps its name and
private IP on a new boot disk; on a container target it deploys the workload
again with ``isolation="sandbox"`` and shows the pods' RuntimeClass. Last it
destroys each fleet (its snapshots stay, as backups), deletes the snapshots
and checks that nothing is left.
Adding a cloud to the demo is adding a target to :func:`demo_targets`.
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
from vmkit.errors import ConfigError, ProviderError, Unsupported
from vmkit.machine import Machine, Snapshot
from vmkit.provider import Provider
from vmkit.registry import connect
from vmkit.spec import Workload

__all__ = ["DemoTarget", "demo_targets", "run_demo"]

_TESTING_HINT = 'the demo needs the simulators: pip install "vmkit[all,testing]"'

#: The name of the snapshot the demo takes and rolls a machine back to.
ROLLBACK_POINT = "before-upgrade"


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
        """Stop, start, snapshot and roll back one machine, as far as the provider can."""
        self.heading(f"{label}: lifecycle of {machine.name}")
        capabilities = provider.capabilities
        if {"stop", "start"} <= capabilities:
            machine = machine.stop()
            self.say(f"stopped {machine.name} ({machine.id}): {machine.state.value}")
            machine = machine.start()
            self.say(f"started {machine.name} ({machine.id}): {machine.state.value}")
        else:
            self.say(f"{provider.name} cannot stop machines: skipped")
        if "snapshot" not in capabilities:
            self.say(f"{provider.name} cannot snapshot machines: skipped")
            if provider.kind == "container":
                self.isolate(provider)
            return
        snap = machine.snapshot(ROLLBACK_POINT)
        self.say(f"snapshot {snap.name} ({snap.id}) of {machine.name}: {snap.state}")
        self.console.print(snapshots_table(provider.snapshots(self.workload.name)))
        if "restore" in capabilities:
            self.rollback(machine, snap)

    def rollback(self, machine: Machine, snap: Snapshot) -> None:
        """Restore ``machine`` from ``snap``; say what it kept and what changed."""
        restored = machine.restore(snap)
        kept, changed = [], []
        if restored.name == machine.name:
            kept.append("name")
        else:
            changed.append(f"name {machine.name} -> {restored.name}")
        if restored.private_ip == machine.private_ip:
            if machine.private_ip is not None:
                kept.append(f"private IP {machine.private_ip}")
        else:
            changed.append(f"private IP {machine.private_ip} -> {restored.private_ip}")
        disk_before, disk_after = _boot_disk(machine), _boot_disk(restored)
        if disk_before is not None and disk_after is not None:
            changed.append(f"boot disk {disk_before} -> {disk_after}")
        parts = ([f"kept its {' and '.join(kept)}"] if kept else []) + changed
        parts.append(restored.state.value)
        self.say(f"restored {restored.name} from {snap.name}: {', '.join(parts)}")

    def isolate(self, provider: Provider) -> None:
        """Deploy the workload again with ``isolation="sandbox"``: its pods are
        replaced by pods under the sandbox RuntimeClass, where the cluster has one."""
        sandboxed = self.workload.model_copy(update={"isolation": "sandbox"})
        try:
            pods = provider.deploy(sandboxed)
        except Unsupported as exc:
            self.say(f'isolation="sandbox" skipped: {exc}')
            return
        names = ", ".join(p.name for p in pods)
        classes = ", ".join(sorted({_runtime_class(p) or "(the default)" for p in pods}))
        self.say(
            f'redeployed {sandboxed.name} with isolation="sandbox": {names} now run under '
            f"RuntimeClass {classes}"
        )

    def destroy(self, label: str, provider: Provider) -> None:
        """Destroy the fleet, which keeps its snapshots; delete them; check nothing is left."""
        name = self.workload.name
        self.heading(f"{label}: destroy {name}")
        removed = provider.destroy(name)
        machines = ", ".join(f"{m.name} ({m.id})" for m in removed) or "none"
        self.say(f"removed {len(removed)} machine(s): {machines}")
        has_snapshots = "snapshot" in provider.capabilities
        if has_snapshots:
            kept = provider.snapshots(name)
            names = ", ".join(s.name for s in kept) or "none"
            self.say(f"kept {len(kept)} snapshot(s), as backups: {names}")
            for snap in kept:
                snap.delete()
            self.say(f"deleted {len(kept)} snapshot(s)")
        left = provider.list(name)
        left_snapshots = provider.snapshots(name) if has_snapshots else []
        if left or left_snapshots:
            raise ProviderError(
                f"demo: {len(left)} machine(s) and {len(left_snapshots)} snapshot(s) of "
                f"{name} are still on {label}",
                provider=provider.name,
            )
        self.say(f"nothing left of {name} on {label}")


def _runtime_class(pod: Machine) -> str | None:
    """The RuntimeClass a pod runs under, from the Pod the API server returned
    (``spec.runtimeClassName``, kubernetes.io/docs/reference/kubernetes-api/
    workload-resources/pod-v1/); None for the cluster's default runtime."""
    spec = pod.raw.get("spec")
    name = spec.get("runtimeClassName") if isinstance(spec, dict) else None
    return str(name) if name else None


def _boot_disk(machine: Machine) -> str | None:
    """The name of a VM's boot disk, read from the cloud's own record
    (``Machine.raw``), or None for a record of another shape."""
    raw = machine.raw
    # EC2 DescribeInstances: the block device mapping at RootDeviceName
    # (docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceBlockDeviceMapping.html).
    root = raw.get("RootDeviceName")
    for mapping in raw.get("BlockDeviceMappings") or ():
        if root is not None and mapping.get("DeviceName") == root:
            volume = (mapping.get("Ebs") or {}).get("VolumeId")
            return str(volume) if volume else None
    # Compute Engine instances.get: the disk with "boot": true; "source" is the
    # disk's URL (cloud.google.com/compute/docs/reference/rest/v1/instances).
    for disk in raw.get("disks") or ():
        if disk.get("boot") and disk.get("source"):
            return str(disk["source"]).rsplit("/", 1)[-1]
    # Azure Virtual Machines - Get: properties.storageProfile.osDisk.name
    # (learn.microsoft.com/en-us/rest/api/compute/virtual-machines/get).
    properties = raw.get("properties")
    if isinstance(properties, dict):
        os_disk = (properties.get("storageProfile") or {}).get("osDisk") or {}
        if os_disk.get("name"):
            return str(os_disk["name"])
    return None


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
