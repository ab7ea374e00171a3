"""What the Compute Engine fake knows before any request: machine types and public images.

Machine types come from the fake's constructor (vmkit's catalog passes its GCP
table); :data:`DEFAULT_MACHINE_TYPES` is a small e2/n2/GPU/Arm set. Public
images are seeded for the families vmkit resolves portable ``os_image`` names
to, with the image names, licenses and architectures the real projects use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCELERATOR_TYPES",
    "DEFAULT_MACHINE_TYPES",
    "PUBLIC_IMAGES",
    "ImageSpec",
    "MachineTypeSpec",
    "cpu_platform",
    "machine_types_from",
]


@dataclass(frozen=True)
class MachineTypeSpec:
    """One machine type. ``zones`` None means offered in every zone of the fake."""

    name: str
    guest_cpus: int
    memory_mb: int
    accelerators: tuple[tuple[str, int], ...] = ()
    architecture: str = "X86_64"
    shared_cpu: bool = False
    zones: frozenset[str] | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MachineTypeSpec:
        """Build from the REST shape (``guestCpus``, ``memoryMb``,
        ``accelerators[{guestAcceleratorType, guestAcceleratorCount}]``) or the
        snake_case spelling of the same fields."""

        def pick(*keys: str, default: Any = None) -> Any:
            for key in keys:
                if key in data:
                    return data[key]
            return default

        accelerators = tuple(
            (
                str(a.get("guestAcceleratorType", a.get("type"))),
                int(a.get("guestAcceleratorCount", a.get("count", 1))),
            )
            for a in pick("accelerators", default=()) or ()
        )
        zones = pick("zones")
        return cls(
            name=str(data["name"]),
            guest_cpus=int(pick("guestCpus", "guest_cpus", "vcpus")),
            memory_mb=int(pick("memoryMb", "memory_mb")),
            accelerators=accelerators,
            architecture=str(pick("architecture", default="X86_64")),
            shared_cpu=bool(pick("isSharedCpu", "shared_cpu", default=False)),
            zones=frozenset(zones) if zones else None,
        )


def machine_types_from(
    specs: Iterable[MachineTypeSpec | Mapping[str, Any]] | None,
) -> dict[str, MachineTypeSpec]:
    """The fake's machine-type table, keyed by name."""
    table: dict[str, MachineTypeSpec] = {}
    for spec in DEFAULT_MACHINE_TYPES if specs is None else specs:
        item = spec if isinstance(spec, MachineTypeSpec) else MachineTypeSpec.from_mapping(spec)
        table[item.name] = item
    return table


# Sizes as published in https://cloud.google.com/compute/docs/general-purpose-machines
# and .../accelerator-optimized-machines (g2 carries one L4, a2-highgpu-1g one A100).
DEFAULT_MACHINE_TYPES: tuple[MachineTypeSpec, ...] = (
    MachineTypeSpec("e2-micro", 2, 1024, shared_cpu=True),
    MachineTypeSpec("e2-small", 2, 2048, shared_cpu=True),
    MachineTypeSpec("e2-medium", 2, 4096, shared_cpu=True),
    MachineTypeSpec("e2-standard-2", 2, 8192),
    MachineTypeSpec("e2-standard-4", 4, 16384),
    MachineTypeSpec("e2-highcpu-4", 4, 4096),
    MachineTypeSpec("n2-standard-2", 2, 8192),
    MachineTypeSpec("n2-standard-4", 4, 16384),
    MachineTypeSpec("n1-standard-4", 4, 15360),
    MachineTypeSpec("g2-standard-4", 4, 16384, accelerators=(("nvidia-l4", 1),)),
    MachineTypeSpec("a2-highgpu-1g", 12, 87040, accelerators=(("nvidia-tesla-a100", 1),)),
    MachineTypeSpec("t2a-standard-2", 2, 8192, architecture="ARM64"),
)

#: accelerator types that may be attached with ``guestAccelerators``
ACCELERATOR_TYPES = frozenset(
    {"nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-v100", "nvidia-l4", "nvidia-tesla-a100"}
)

_CPU_PLATFORMS = {
    "e2": "Intel Broadwell",
    "n1": "Intel Haswell",
    "n2": "Intel Cascade Lake",
    "n2d": "AMD Milan",
    "c3": "Intel Sapphire Rapids",
    "g2": "Intel Cascade Lake",
    "a2": "Intel Cascade Lake",
    "t2a": "Ampere Altra",
}


def cpu_platform(machine_type: str) -> str:
    """The ``cpuPlatform`` a running instance of ``machine_type`` reports."""
    return _CPU_PLATFORMS.get(machine_type.split("-", 1)[0], "Intel Broadwell")


@dataclass(frozen=True)
class ImageSpec:
    """One image in an image project."""

    project: str
    name: str
    family: str
    architecture: str
    description: str
    license: str
    disk_size_gb: int = 10
    deprecated_by: str | None = None
    creation: str = "2025-01-10T00:00:00.000-08:00"
    labels: Mapping[str, str] = field(default_factory=dict)


def _ubuntu(name: str, family: str, arch: str, release: str, built: str) -> ImageSpec:
    cpu = "arm64" if arch == "ARM64" else "amd64"
    return ImageSpec(
        project="ubuntu-os-cloud",
        name=name,
        family=family,
        architecture=arch,
        description=f"Canonical, Ubuntu, {release}, {cpu} image built on {built}",
        license=f"ubuntu-{release[:5].replace('.', '')}-lts",
    )


def _debian(name: str, family: str, arch: str, built: str) -> ImageSpec:
    cpu = "arm64" if arch == "ARM64" else "amd64"
    return ImageSpec(
        project="debian-cloud",
        name=name,
        family=family,
        architecture=arch,
        description=f"Debian, Debian GNU/Linux, 12 (bookworm), {cpu} built on {built}",
        license="debian-12-bookworm",
    )


# Image and family names follow the public projects (gcloud compute images list
# --project ubuntu-os-cloud / debian-cloud); one deprecated older image per
# family shows that getFromFamily returns the newest non-deprecated image.
PUBLIC_IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        project="ubuntu-os-cloud",
        name="ubuntu-2204-jammy-v20241115",
        family="ubuntu-2204-lts",
        architecture="X86_64",
        description="Canonical, Ubuntu, 22.04 LTS, amd64 jammy image built on 2024-11-15",
        license="ubuntu-2204-lts",
        deprecated_by="ubuntu-2204-jammy-v20250112",
        creation="2024-11-15T00:00:00.000-08:00",
    ),
    _ubuntu("ubuntu-2204-jammy-v20250112", "ubuntu-2204-lts", "X86_64", "22.04 LTS", "2025-01-12"),
    _ubuntu(
        "ubuntu-2204-jammy-arm64-v20250112",
        "ubuntu-2204-lts-arm64",
        "ARM64",
        "22.04 LTS",
        "2025-01-12",
    ),
    _ubuntu(
        "ubuntu-2404-noble-amd64-v20250107",
        "ubuntu-2404-lts-amd64",
        "X86_64",
        "24.04 LTS",
        "2025-01-07",
    ),
    _ubuntu(
        "ubuntu-2404-noble-arm64-v20250107",
        "ubuntu-2404-lts-arm64",
        "ARM64",
        "24.04 LTS",
        "2025-01-07",
    ),
    _debian("debian-12-bookworm-v20250113", "debian-12", "X86_64", "20250113"),
    _debian("debian-12-bookworm-arm64-v20250113", "debian-12-arm64", "ARM64", "20250113"),
)
