"""The public names, and that importing vmkit stays cheap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_building_a_workload_loads_no_sdk_and_no_yaml() -> None:
    # What `import vmkit; vmkit.Workload(...)` costs is what every script pays
    # (docs/performance.md): PyYAML is for YAML files only, SDKs for connect().
    code = textwrap.dedent(
        """
        import sys, vmkit
        schema = vmkit.Workload.model_json_schema()
        w = vmkit.Workload(name="w", image="nginx", ports=[80], resources={"memory": "4GiB"})
        heavy = ("boto3", "botocore", "google", "azure", "kubernetes", "libcloud", "yaml")
        print(",".join(m for m in heavy if m in sys.modules))
        print(schema["additionalProperties"], w.resources.memory, len(w.spec_hash))
        print(vmkit.Workload.from_yaml_text("name: w\\nports: [80]").ports, "yaml" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "",
        f"False {4 * 2**30} 16",
        "[Port(port=80, protocol='tcp')] True",
    ]


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        vmkit.NoSuchThing  # noqa: B018
