"""The conformance suite against the Kubernetes backend on the HTTP fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import vmkit
from vmkit.testing.conformance import ProviderConformance

pytest.importorskip("kubernetes")

from vmkit.testing.fakes.kubernetes.sim import simulated_kubernetes


class TestKubernetesConformance(ProviderConformance):
    # A pod's id is its uid (a UUID); this one names no pod.
    missing_machine_id = "0b9d4c1e-7f4a-4c36-9a0e-2f4c8e1d5a77"

    @pytest.fixture
    def provider(self) -> Iterator[vmkit.Provider]:
        with simulated_kubernetes() as config:
            yield vmkit.connect("kubernetes", **config)

    @pytest.fixture
    def workload_factory(self) -> Callable[..., vmkit.Workload]:
        def make(name: str, replicas: int = 2, **overrides: Any) -> vmkit.Workload:
            fields: dict[str, Any] = {
                "image": "nginx:1.27",
                "ports": [80],
                "resources": {"cpu": 0.25, "memory": "256MiB"},
            }
            fields.update(overrides)
            return vmkit.Workload(name=name, replicas=replicas, **fields)

        return make
