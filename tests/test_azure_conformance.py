"""The conformance suite against the Azure backend on the Azure fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import vmkit
from vmkit.testing.conformance import ProviderConformance
from vmkit.testing.fakes.azure.sim import simulated_azure


class TestAzureConformance(ProviderConformance):
    # A machine id is a VM's vmId, a GUID.
    missing_machine_id = "6f1c2e9a-0d3b-4c8e-9a71-5b2f4e8d0c13"

    @pytest.fixture(scope="class")
    @classmethod
    def azure_config(cls) -> Iterator[dict[str, Any]]:
        with simulated_azure() as config:
            yield config

    @pytest.fixture
    def provider(self, azure_config: dict[str, Any]) -> vmkit.Provider:
        return vmkit.connect("azure", **azure_config)

    @pytest.fixture
    def workload_factory(self) -> Callable[..., vmkit.Workload]:
        def make(name: str, replicas: int = 2, **overrides: Any) -> vmkit.Workload:
            fields: dict[str, Any] = {"image": "nginx:1.27", "ports": [80]}
            fields.update(overrides)
            return vmkit.Workload(name=name, replicas=replicas, **fields)

        return make
