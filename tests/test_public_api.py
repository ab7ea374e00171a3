"""The public names, and that importing vmkit stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vmkit
from vmkit import errors

DESIGN_NAMES = {
    "Workload", "Resources", "Port", "Machine", "MachineState", "Snapshot", "connect",
    "VmkitError", "SpecError", "ProviderError", "NotFound", "AuthError", "QuotaExceeded",
    "Throttled", "Unsupported", "DeployTimeout",
}  # fmt: skip


def test_all_lists_the_design_names_and_each_resolves() -> None:
    assert set(vmkit.__all__) >= DESIGN_NAMES
    for name in vmkit.__all__:
        assert getattr(vmkit, name) is not None


def test_error_hierarchy_is_as_designed() -> None:
    assert issubclass(errors.SpecError, errors.VmkitError)
    assert issubclass(errors.SpecError, ValueError)
    for cls in (
        errors.NotFound,
        errors.AuthError,
        errors.QuotaExceeded,
        errors.Throttled,
        errors.Unsupported,
        errors.DeployTimeout,
    ):
        assert issubclass(cls, errors.ProviderError)
        assert getattr(vmkit, cls.__name__) is cls


def test_machine_states_are_strings() -> None:
    assert vmkit.MachineState("running") == "running"
    assert [s.value for s in vmkit.MachineState] == [
        "pending", "running", "stopping", "stopped", "deleting", "deleted", "failed", "unknown",
    ]  # fmt: skip


def test_import_vmkit_loads_no_sdk_and_no_pydantic() -> None:
    code = (
        "import sys, vmkit\n"
        "heavy = [m for m in ('boto3', 'botocore', 'google', 'azure', 'kubernetes', "
        "'pydantic', 'yaml', 'rich', 'click', 'tenacity') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        vmkit.NoSuchThing  # noqa: B018
