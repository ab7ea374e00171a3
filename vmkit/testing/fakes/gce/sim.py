"""A simulated Compute Engine: the real google-cloud-compute client against :class:`GceFake`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vmkit.catalog import instance_types
from vmkit.testing.fakes.gce.catalog import MachineTypeSpec
from vmkit.testing.fakes.gce.server import GceFake

__all__ = ["catalog_machine_types", "simulated_gcp"]


def catalog_machine_types() -> list[MachineTypeSpec]:
    """vmkit's GCP catalog as the fake's machine types (GPU types with their GPUs)."""
    specs = []
    for item in instance_types("gcp"):
        accelerators: tuple[tuple[str, int], ...] = ()
        if item.gpus:
            model = (item.gpu_model or "gpu").lower().replace("nvidia ", "nvidia-")
            accelerators = ((model.split()[0], item.gpus),)
        specs.append(
            MachineTypeSpec(
                name=item.name,
                guest_cpus=max(1, round(item.vcpus)) if item.family != "burstable" else 2,
                memory_mb=round(item.memory / 2**20),
                accelerators=accelerators,
                architecture="ARM64" if item.arch == "arm64" else "X86_64",
                shared_cpu=item.family == "burstable",
            )
        )
    return specs


@contextmanager
def simulated_gcp(
    *, project: str = "vmkit-sim", zone: str = "us-central1-a", **fake_options: Any
) -> Iterator[dict[str, Any]]:
    """Start a :class:`GceFake` on 127.0.0.1 and yield ``connect("gcp", ...)`` kwargs.

    The fake serves vmkit's catalog machine types; ``fake_options`` go to
    :class:`GceFake` (delays, faults...). Credentials are anonymous: the fake
    asks for none.
    """
    from google.auth.credentials import AnonymousCredentials

    fake_options.setdefault("operation_delay", 0.02)
    fake_options.setdefault("transition_delay", 0.04)
    fake_options.setdefault("machine_types", catalog_machine_types())
    with GceFake(project=project, **fake_options) as fake:
        yield {
            "project": project,
            "zone": zone,
            "endpoint": fake.url,
            "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
            "poll_interval": 0.02,
        }
