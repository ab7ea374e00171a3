"""The conformance suite against the Compute Engine backend and the HTTP fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("google.cloud.compute_v1")

import vmkit
from vmkit.provider import Provider
from vmkit.testing.conformance import ProviderConformance
from vmkit.testing.fakes.gce.sim import simulated_gcp


@pytest.fixture(scope="module")
def gcp_config() -> Iterator[dict[str, Any]]:
    with simulated_gcp(operation_delay=0.01, transition_delay=0.02) as config:
        yield config


class TestGcpConformance(ProviderConformance):
    missing_machine_id = "1234567890123456789"

    @pytest.fixture
    def provider(self, gcp_config: dict[str, Any]) -> Provider:
        return vmkit.connect("gcp", **gcp_config)

    @pytest.fixture
    def workload_factory(self) -> Callable[..., vmkit.Workload]:
        def make(name: str, replicas: int = 2, **overrides: Any) -> vmkit.Workload:
            overrides.setdefault("ports", [80])
            return vmkit.Workload(name=name, image="nginx:1.27", replicas=replicas, **overrides)

        return make
