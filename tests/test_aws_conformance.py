"""The conformance suite against the EC2 backend on moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import vmkit
from vmkit.testing.conformance import ProviderConformance


class TestAwsConformance(ProviderConformance):
    missing_machine_id = "i-0123456789abcdef0"

    @pytest.fixture
    def provider(self, aws: vmkit.Provider) -> vmkit.Provider:
        return aws

    @pytest.fixture
    def workload_factory(self) -> Callable[..., vmkit.Workload]:
        def make(name: str, replicas: int = 2, **overrides: Any) -> vmkit.Workload:
            fields: dict[str, Any] = {"image": "nginx:1.27", "ports": [80]}
            fields.update(overrides)
            return vmkit.Workload(name=name, replicas=replicas, **fields)

        return make
