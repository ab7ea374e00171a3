"""Shared fixtures. Each backend's fixtures live in their own section."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# CI replays the same examples every run (a failure there is reproducible);
# developers' runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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
