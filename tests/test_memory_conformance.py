"""The conformance suite against the in-memory reference provider: it checks
the suite itself and the shared base class, with no cloud in the way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from memory_provider import MemoryProvider

import vmkit
from vmkit.testing.conformance import ProviderConformance


class TestMemoryConformance(ProviderConformance):
    @pytest.fixture
    def provider(self) -> MemoryProvider:
        return MemoryProvider()

    @pytest.fixture
    def workload_factory(self) -> Callable[..., vmkit.Workload]:
        def make(name: str, replicas: int = 2, **overrides: Any) -> vmkit.Workload:
            return vmkit.Workload(name=name, image="nginx:1.27", replicas=replicas, **overrides)

        return make
