"""Shipped instance-type and image tables, and the resolution built on them.

``Resources`` resolve to the cheapest instance type that fits, from a catalog
of the common types of each cloud with their on-demand Linux price in one
reference region (``data/<provider>.json``; :func:`catalog_info` says where
and when the figures were read). Portable ``os_image`` names resolve to the
provider's own way of naming "the current image of this release".

Everything here is pure: no cloud call. Backends pass the names the live API
offers as ``available`` so the choice is checked against the region.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources as _resources
from typing import Any, Literal, get_args

from vmkit.errors import ConfigError, SpecError
from vmkit.spec import Resources, format_size

__all__ = [
    "PORTABLE_IMAGES",
    "PROVIDERS",
    "Arch",
    "ImageRef",
    "InstanceType",
    "catalog_info",
    "fitting_types",
    "instance_types",
    "resolve_image",
    "resolve_instance_type",
]

Arch = Literal["x86_64", "arm64"]
Family = Literal["general", "compute", "memory", "gpu", "burstable"]
ImageKind = Literal["ssm-parameter", "family", "urn", "native"]

PROVIDERS: tuple[str, ...] = ("aws", "gcp", "azure")
PORTABLE_IMAGES: tuple[str, ...] = ("ubuntu-22.04", "ubuntu-24.04", "debian-12")

_ARCHES: frozenset[str] = frozenset(get_args(Arch))
_FAMILIES: frozenset[str] = frozenset(get_args(Family))


@dataclass(frozen=True)
class InstanceType:
    """One machine size of a cloud, as the catalog records it."""

    name: str
    vcpus: float
    memory: int  # bytes
    gpus: int
    gpu_model: str | None
    arch: Arch
    price: float  # on-demand USD per hour in the catalog's reference region
    family: str  # "general" | "compute" | "memory" | "gpu" | "burstable"


@dataclass(frozen=True)
class ImageRef:
    """How a provider names the boot image: resolve ``value`` the ``kind`` way."""

    kind: ImageKind
    value: str  # SSM parameter name / image family URL / Azure URN / the id as given


def _check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise ConfigError(f"no catalog for provider {provider!r}; known: {known}")


def _check_arch(arch: str) -> None:
    if arch not in _ARCHES:
        raise ConfigError(f"unknown architecture {arch!r}; use 'x86_64' or 'arm64'")


@cache
def _load(provider: str) -> tuple[dict[str, str], tuple[InstanceType, ...]]:
    path = _resources.files("vmkit.catalog") / "data" / f"{provider}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    source = document["source"]
    info = {
        "source": ", ".join(source) if isinstance(source, list) else str(source),
        "date": str(document["date"]),
        "region": str(document["region"]),
    }
    types = tuple(_instance_type(provider, entry) for entry in document["types"])
    return info, types


def _instance_type(provider: str, entry: dict[str, Any]) -> InstanceType:
    arch, family = entry["arch"], entry["family"]
    # A typo in shipped data must fail loudly at load, not pick odd machines later.
    if arch not in _ARCHES or family not in _FAMILIES:
        raise ValueError(f"catalog {provider}.json: {entry['name']!r} has a bad arch or family")
    return InstanceType(
        name=str(entry["name"]),
        vcpus=float(entry["vcpus"]),
        memory=round(float(entry["memory_gib"]) * 2**30),
        gpus=int(entry["gpus"]),
        gpu_model=entry.get("gpu_model"),
        arch=arch,
        price=float(entry["price"]),
        family=str(family),
    )


def instance_types(provider: str) -> list[InstanceType]:
    """Every instance type of the provider's catalog (loaded once, then cached).

    Raises ConfigError for an unknown provider. The list is a fresh copy.
    """
    _check_provider(provider)
    return list(_load(provider)[1])


def catalog_info(provider: str) -> dict[str, str]:
    """Where the catalog's figures come from: ``source`` (URLs), ``date``, ``region``."""
    _check_provider(provider)
    return dict(_load(provider)[0])


def _cheapest_first(item: InstanceType) -> tuple[float, float, int, str]:
    return (item.price, item.vcpus, item.memory, item.name)


def fitting_types(
    provider: str, resources: Resources, *, arch: Arch = "x86_64"
) -> list[InstanceType]:
    """Every type of ``arch`` with at least the requested vCPUs, memory and GPUs.

    A CPU workload (``gpu == 0``) never gets a GPU machine. Sorted cheapest
    first; ties go to fewer vCPUs, then less memory, then the name, so the
    order is total and the same on every run.
    """
    _check_arch(arch)
    fits = [
        item
        for item in instance_types(provider)
        if item.arch == arch
        and item.vcpus >= resources.cpu
        and item.memory >= resources.memory
        and item.gpus >= resources.gpu
        and (resources.gpu > 0 or item.gpus == 0)
    ]
    return sorted(fits, key=_cheapest_first)


def resolve_instance_type(
    provider: str,
    resources: Resources,
    *,
    arch: Arch = "x86_64",
    available: Collection[str] | None = None,
) -> InstanceType:
    """The cheapest type that fits (see :func:`fitting_types`).

    ``available`` (names the live API offers in the region), when given,
    limits the choice. Raises SpecError naming the field that cannot be met:
    ``resources.gpu``, ``resources.cpu`` or ``resources.memory`` with the
    largest value that exists, or ``resources`` when types fit but none of
    them is offered in the region.
    """
    fits = fitting_types(provider, resources, arch=arch)
    if not fits:
        raise _unreachable(provider, resources, arch)
    if available is None:
        return fits[0]
    offered = set(available)
    for item in fits:
        if item.name in offered:
            return item
    examples = ", ".join(item.name for item in fits[:3])
    raise SpecError(
        "resources",
        f"none of the {len(fits)} fitting {provider} instance types ({examples}"
        f"{', ...' if len(fits) > 3 else ''}) is offered in the region",
    )


def _unreachable(provider: str, resources: Resources, arch: Arch) -> SpecError:
    """Say which single requirement puts every type out of reach."""
    for_arch = "" if arch == "x86_64" else f" for {arch}"
    pool = [item for item in instance_types(provider) if item.arch == arch]
    most_gpus = max((item.gpus for item in pool), default=0)
    if resources.gpu > most_gpus:
        noun = "GPU" if resources.gpu == 1 else "GPUs"
        return SpecError(
            "resources.gpu",
            f"no {provider} instance type{for_arch} has {resources.gpu} {noun} "
            f"(the most is {most_gpus})",
        )
    pool = [
        item
        for item in pool
        if item.gpus >= resources.gpu and (resources.gpu > 0 or item.gpus == 0)
    ]
    scope = f"{provider} {'GPU ' if resources.gpu else ''}instance type{for_arch}"
    most_cpus = max((item.vcpus for item in pool), default=0.0)
    if resources.cpu > most_cpus:
        return SpecError(
            "resources.cpu",
            f"no {scope} has {_vcpus(resources.cpu)} (the most is {_vcpus(most_cpus)})",
        )
    wanted = format_size(resources.memory)
    most_memory = max(item.memory for item in pool)
    if resources.memory > most_memory:
        return SpecError(
            "resources.memory",
            f"no {scope} has {wanted} of memory (the most is {format_size(most_memory)})",
        )
    # Each need is met by some type, but not both by the same one.
    most_with_cpus = max(item.memory for item in pool if item.vcpus >= resources.cpu)
    return SpecError(
        "resources.memory",
        f"no {scope} with {_vcpus(resources.cpu)} has {wanted} of memory "
        f"(the most is {format_size(most_with_cpus)})",
    )


def _vcpus(value: float) -> str:
    return f"{value:g} vCPU" + ("" if value == 1 else "s")


# Canonical publishes one SSM parameter per release, arch and volume type; 22.04
# images are published for ebs-gp2 and 24.04 for ebs-gp3. Debian's parameter is
# per release and arch. Sources:
# https://discourse.ubuntu.com/t/finding-ubuntu-images-with-the-aws-ssm-parameter-store/15507
# https://wiki.debian.org/Cloud/AmazonEC2Image (/aws/service/debian/release/12/latest/<arch>)
_AWS_IMAGES: dict[tuple[str, str], str] = {
    ("ubuntu-22.04", "x86_64"): (
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
    ),
    ("ubuntu-22.04", "arm64"): (
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/arm64/hvm/ebs-gp2/ami-id"
    ),
    ("ubuntu-24.04", "x86_64"): (
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    ),
    ("ubuntu-24.04", "arm64"): (
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id"
    ),
    ("debian-12", "x86_64"): "/aws/service/debian/release/12/latest/amd64",
    ("debian-12", "arm64"): "/aws/service/debian/release/12/latest/arm64",
}

# Image families of the public image projects; the 24.04 family carries an
# explicit -amd64 suffix, 22.04's amd64 family has none.
# https://cloud.google.com/compute/docs/images/os-details
_GCP_IMAGES: dict[tuple[str, str], str] = {
    ("ubuntu-22.04", "x86_64"): "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
    ("ubuntu-22.04", "arm64"): (
        "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts-arm64"
    ),
    ("ubuntu-24.04", "x86_64"): (
        "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
    ),
    ("ubuntu-24.04", "arm64"): (
        "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-arm64"
    ),
    ("debian-12", "x86_64"): "projects/debian-cloud/global/images/family/debian-12",
    ("debian-12", "arm64"): "projects/debian-cloud/global/images/family/debian-12-arm64",
}

# Marketplace URNs publisher:offer:sku:version (Gen2 SKUs for x86_64, the
# arm64 SKUs of the same offers).
# https://learn.microsoft.com/azure/virtual-machines/linux/cli-ps-findimage
_AZURE_IMAGES: dict[tuple[str, str], str] = {
    ("ubuntu-22.04", "x86_64"): "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
    ("ubuntu-22.04", "arm64"): "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-arm64:latest",
    ("ubuntu-24.04", "x86_64"): "Canonical:ubuntu-24_04-lts:server:latest",
    ("ubuntu-24.04", "arm64"): "Canonical:ubuntu-24_04-lts:server-arm64:latest",
    ("debian-12", "x86_64"): "Debian:debian-12:12-gen2:latest",
    ("debian-12", "arm64"): "Debian:debian-12:12-arm64:latest",
}

_IMAGES: dict[str, tuple[ImageKind, dict[tuple[str, str], str]]] = {
    "aws": ("ssm-parameter", _AWS_IMAGES),
    "gcp": ("family", _GCP_IMAGES),
    "azure": ("urn", _AZURE_IMAGES),
}


def resolve_image(provider: str, os_image: str, *, arch: Arch = "x86_64") -> ImageRef:
    """The provider's reference for a portable image name, for ``arch``.

    A name outside :data:`PORTABLE_IMAGES` is taken as a provider-native id
    and returned unchanged as ``ImageRef("native", os_image)``. Raises
    ConfigError for an unknown provider or architecture.
    """
    _check_provider(provider)
    _check_arch(arch)
    kind, table = _IMAGES[provider]
    value = table.get((os_image, arch))
    if value is None:
        return ImageRef("native", os_image)
    return ImageRef(kind, value)
