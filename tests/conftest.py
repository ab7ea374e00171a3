"""Shared fixtures. Each backend's fixtures live in their own section."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_user_targets(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep a developer's own targets file ($VMKIT_CONFIG, ~/.config/vmkit) out of tests."""
    monkeypatch.delenv("VMKIT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


# ------------------------------------------------------------------------ AWS


@pytest.fixture
def aws_config() -> Iterator[dict[str, Any]]:
    """A fresh simulated AWS account (moto, in-process); the connect() config."""
    from vmkit.testing.sim import simulated_aws

    with simulated_aws() as config:
        yield config


@pytest.fixture
def aws(aws_config: dict[str, Any]) -> Any:
    """An AwsProvider connected to the simulated account."""
    import vmkit

    return vmkit.connect("aws", **aws_config)
