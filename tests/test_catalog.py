"""Instance-type and image catalogs: the shipped data and the cheapest-fit choice."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest

import vmkit
from vmkit.catalog import (
    PORTABLE_IMAGES,
    PROVIDERS,
    ImageRef,
    InstanceType,
    catalog_info,
    fitting_types,
    instance_types,
    resolve_image,
    resolve_instance_type,
)

GiB = 2**30
FAMILIES = {"general", "compute", "memory", "gpu", "burstable"}


def need(cpu: float = 1, memory: Any = "2GiB", gpu: int = 0) -> vmkit.Resources:
    return vmkit.Resources(cpu=cpu, memory=memory, gpu=gpu)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_entry_is_sane(provider: str) -> None:
    types = instance_types(provider)
    assert 25 <= len(types) <= 55
    assert len({item.name for item in types}) == len(types)
    for item in types:
        assert item.vcpus > 0, item
        assert item.memory >= GiB // 2, item
        assert item.price > 0, item
        assert item.arch in {"x86_64", "arm64"}, item
        assert item.family in FAMILIES, item
        assert item.gpus >= 0
        # GPU machines and only they have a GPU count and model.
        assert (item.family == "gpu") == (item.gpus > 0) == (item.gpu_model is not None), item
    assert {item.arch for item in types} == {"x86_64", "arm64"}
    assert {item.family for item in types} >= FAMILIES


@pytest.mark.parametrize("provider", PROVIDERS)
def test_catalog_says_where_its_figures_come_from(provider: str) -> None:
    info = catalog_info(provider)
    assert info["region"] == {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}[provider]
    assert info["date"] == "2026-11-27"
    assert "https://" in info["source"]
    raw = json.loads(
        (resources.files("vmkit.catalog") / "data" / f"{provider}.json").read_text("utf-8")
    )
    assert raw["region"] == info["region"]
    assert isinstance(raw["types"], list)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_price_grows_with_size_within_a_series(provider: str) -> None:
    """Consistent prices: in one series, more vCPUs never cost less (the
    cheapest-fit choice depends on the ordering being realistic)."""
    series: dict[str, list[InstanceType]] = {}
    for item in instance_types(provider):
        series.setdefault(_series(provider, item.name), []).append(item)
    assert len(series) < len(instance_types(provider)) / 2
    for members in series.values():
        members.sort(key=lambda item: (item.vcpus, item.memory))
        prices = [item.price for item in members]
        assert prices == sorted(prices), members


def _series(provider: str, name: str) -> str:
    """The series of a size: 'm7i.2xlarge' -> 'm7i', 'n2-highmem-8' -> 'n2-highmem',
    'Standard_D4s_v5' -> 'Standard_D#s_v#'."""
    if provider == "aws":
        return name.split(".")[0]
    if provider == "gcp":
        return name.rsplit("-", 1)[0]
    return re.sub(r"\d+", "#", name)


def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(vmkit.ConfigError, match="oracle"):
        instance_types("oracle")
    with pytest.raises(vmkit.ConfigError):
        resolve_image("oracle", "ubuntu-22.04")
    with pytest.raises(vmkit.ConfigError):
        catalog_info("oracle")


def test_instance_types_returns_a_copy() -> None:
    first = instance_types("aws")
    first.clear()
    assert instance_types("aws")


@pytest.mark.parametrize(
    ("provider", "wanted", "expected"),
    [
        ("aws", need(), "t3a.small"),
        ("aws", need(cpu=0.5, memory="1GiB"), "t3a.micro"),
        ("aws", need(cpu=8, memory="16GiB"), "c7i.2xlarge"),
        ("aws", need(cpu=2, memory="64GiB"), "r7i.2xlarge"),
        ("aws", need(cpu=100, memory="1000GiB"), "r7i.48xlarge"),
        ("gcp", need(), "e2-medium"),
        # Shared-core e2-small sustains half a vCPU: fine for 0.5, not for 1.
        ("gcp", need(cpu=0.5, memory="2GiB"), "e2-small"),
        ("gcp", need(cpu=2, memory="8GiB"), "e2-standard-2"),
        ("gcp", need(cpu=200, memory="800GiB"), "n2d-standard-224"),
        ("azure", need(), "Standard_B2als_v2"),
        ("azure", need(cpu=8, memory="16GiB"), "Standard_F8s_v2"),
        ("azure", need(cpu=2, memory="64GiB"), "Standard_E8s_v5"),
    ],
)
def test_cheapest_fit(provider: str, wanted: vmkit.Resources, expected: str) -> None:
    chosen = resolve_instance_type(provider, wanted)
    assert chosen.name == expected
    assert chosen.vcpus >= wanted.cpu
    assert chosen.memory >= wanted.memory
    assert chosen.gpus == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fitting_types_are_sorted_and_all_fit(provider: str) -> None:
    wanted = need(cpu=4, memory="16GiB")
    fits = fitting_types(provider, wanted)
    assert fits
    keys = [(item.price, item.vcpus, item.memory, item.name) for item in fits]
    assert keys == sorted(keys)
    for item in fits:
        assert item.vcpus >= 4
        assert item.memory >= 16 * GiB
        assert item.arch == "x86_64"
    fitting = {item.name for item in fits}
    left_out = [item for item in instance_types(provider) if item.name not in fitting]
    for item in left_out:
        assert item.vcpus < 4 or item.memory < 16 * GiB or item.gpus or item.arch != "x86_64"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cpu_workload_never_gets_a_gpu_machine(provider: str) -> None:
    # So large that some GPU machines would fit on size alone.
    wanted = need(cpu=48, memory="192GiB")
    assert all(item.gpus == 0 for item in fitting_types(provider, wanted))
    assert resolve_instance_type(provider, wanted).family != "gpu"


@pytest.mark.parametrize(
    ("provider", "gpus", "expected"),
    [
        ("aws", 1, "g6.xlarge"),
        ("aws", 4, "g6.12xlarge"),
        ("aws", 8, "g6.48xlarge"),
        ("gcp", 1, "g2-standard-4"),
        ("gcp", 16, "a2-megagpu-16g"),
        ("azure", 1, "Standard_NC4as_T4_v3"),
        ("azure", 8, "Standard_ND96asr_v4"),
    ],
)
def test_a_gpu_request_picks_a_gpu_machine(provider: str, gpus: int, expected: str) -> None:
    chosen = resolve_instance_type(provider, need(gpu=gpus))
    assert chosen.name == expected
    assert chosen.gpus >= gpus
    assert chosen.gpu_model
    assert chosen.family == "gpu"


def test_a_gpu_request_with_big_memory_moves_to_a_bigger_gpu_machine() -> None:
    chosen = resolve_instance_type("aws", need(cpu=8, memory="1TiB", gpu=8))
    assert chosen.name == "p4d.24xlarge"


@pytest.mark.parametrize(
    ("provider", "arch", "wanted", "expected"),
    [
        ("aws", "arm64", need(), "t4g.small"),
        ("aws", "arm64", need(cpu=64, memory="256GiB"), "m7g.16xlarge"),
        ("gcp", "arm64", need(), "t2a-standard-1"),
        ("gcp", "arm64", need(cpu=64, memory="256GiB"), "c4a-standard-72"),
        ("azure", "arm64", need(), "Standard_B2pls_v2"),
        ("azure", "arm64", need(cpu=8, memory="32GiB"), "Standard_D8ps_v5"),
    ],
)
def test_arm64_resolution(
    provider: str, arch: vmkit.catalog.Arch, wanted: vmkit.Resources, expected: str
) -> None:
    chosen = resolve_instance_type(provider, wanted, arch=arch)
    assert chosen.name == expected
    assert chosen.arch == "arm64"


def test_available_restricts_the_choice() -> None:
    wanted = need()
    cheapest = resolve_instance_type("aws", wanted)
    fits = fitting_types("aws", wanted)
    # The region does not offer the cheapest: the next cheapest offered wins.
    offered = {item.name for item in fits[2:]} | {"x9.nonexistent"}
    chosen = resolve_instance_type("aws", wanted, available=offered)
    assert chosen != cheapest
    assert chosen == fits[2]
    assert resolve_instance_type("aws", wanted, available=[cheapest.name]) == cheapest


def test_nothing_offered_in_the_region_names_resources() -> None:
    with pytest.raises(vmkit.SpecError) as caught:
        resolve_instance_type("gcp", need(gpu=1), available={"e2-medium", "n2-standard-2"})
    assert caught.value.field == "resources"
    assert "offered in the region" in str(caught.value)
    assert "g2-standard-4" in str(caught.value)


@pytest.mark.parametrize(
    ("provider", "wanted", "arch", "field", "words"),
    [
        ("aws", need(gpu=16), "x86_64", "resources.gpu", "no aws instance type has 16 GPUs"),
        ("aws", need(gpu=16), "x86_64", "resources.gpu", "the most is 8"),
        ("azure", need(gpu=1), "arm64", "resources.gpu", "the most is 0"),
        ("aws", need(cpu=1000), "x86_64", "resources.cpu", "the most is 192 vCPUs"),
        ("azure", need(cpu=128), "x86_64", "resources.cpu", "the most is 96 vCPUs"),
        ("gcp", need(cpu=100, gpu=16), "x86_64", "resources.cpu", "GPU instance type"),
        ("aws", need(memory="4TiB"), "x86_64", "resources.memory", "the most is 1536GiB"),
        ("azure", need(cpu=64, memory="256GiB"), "arm64", "resources.memory", "for arm64"),
    ],
)
def test_impossible_requests_name_the_field(
    provider: str,
    wanted: vmkit.Resources,
    arch: vmkit.catalog.Arch,
    field: str,
    words: str,
) -> None:
    with pytest.raises(vmkit.SpecError) as caught:
        resolve_instance_type(provider, wanted, arch=arch)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(vmkit.ConfigError, match="architecture"):
        fitting_types("aws", need(), arch="riscv64")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("provider", "name", "arch", "expected"),
    [
        (
            "aws",
            "ubuntu-22.04",
            "x86_64",
            ImageRef(
                "ssm-parameter",
                "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
            ),
        ),
        (
            "aws",
            "ubuntu-24.04",
            "arm64",
            ImageRef(
                "ssm-parameter",
                "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id",
            ),
        ),
        (
            "aws",
            "debian-12",
            "arm64",
            ImageRef("ssm-parameter", "/aws/service/debian/release/12/latest/arm64"),
        ),
        (
            "gcp",
            "ubuntu-22.04",
            "x86_64",
            ImageRef("family", "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"),
        ),
        (
            "gcp",
            "ubuntu-24.04",
            "x86_64",
            ImageRef(
                "family", "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
            ),
        ),
        (
            "gcp",
            "debian-12",
            "arm64",
            ImageRef("family", "projects/debian-cloud/global/images/family/debian-12-arm64"),
        ),
        (
            "azure",
            "ubuntu-22.04",
            "x86_64",
            ImageRef("urn", "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"),
        ),
        (
            "azure",
            "ubuntu-24.04",
            "arm64",
            ImageRef("urn", "Canonical:ubuntu-24_04-lts:server-arm64:latest"),
        ),
        ("azure", "debian-12", "x86_64", ImageRef("urn", "Debian:debian-12:12-gen2:latest")),
    ],
)
def test_portable_images_map_per_cloud_and_arch(
    provider: str, name: str, arch: vmkit.catalog.Arch, expected: ImageRef
) -> None:
    assert resolve_image(provider, name, arch=arch) == expected


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_portable_image_resolves_differently_per_arch(provider: str) -> None:
    for name in PORTABLE_IMAGES:
        x86 = resolve_image(provider, name)
        arm = resolve_image(provider, name, arch="arm64")
        assert x86.kind == arm.kind != "native"
        assert x86.value != arm.value


@pytest.mark.parametrize(
    ("provider", "native"),
    [
        ("aws", "ami-0123456789abcdef0"),
        ("gcp", "projects/my-project/global/images/my-golden-image"),
        ("azure", "Canonical:0001-com-ubuntu-server-focal:20_04-lts-gen2:latest"),
        ("aws", "Ubuntu-22.04"),  # not the portable spelling: taken as given
    ],
)
def test_a_native_id_passes_through(provider: str, native: str) -> None:
    assert resolve_image(provider, native) == ImageRef("native", native)
    assert resolve_image(provider, native, arch="arm64") == ImageRef("native", native)
