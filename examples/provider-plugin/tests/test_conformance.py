"""vmkit's conformance suite against the sqlite backend, reached through its
entry point: this only passes once the package is installed
(``pip install -e examples/provider-plugin``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vmkit
from vmkit.provider import Provider
from vmkit.testing.conformance import ProviderConformance


class TestSqliteConformance(ProviderConformance):
    # The shape of this backend's ids ("sq-" and 12 hex digits), naming nothing.
    missing_machine_id = "sq-000000000000"

    @pytest.fixture
    def provider(self, tmp_path: Path) -> Provider:
        return vmkit.connect(
            "sqlite", path=tmp_path / "db.sqlite", boot_delay=0.05, poll_interval=0.01
        )

    @pytest.fixture
    def workload_factory(self) -> Callable[..., vmkit.Workload]:
        def make(name: str, replicas: int = 2, **overrides: Any) -> vmkit.Workload:
            overrides.setdefault("ports", [80])
            return vmkit.Workload(name=name, image="nginx:1.27", replicas=replicas, **overrides)

        return make
