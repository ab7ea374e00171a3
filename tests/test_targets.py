"""The targets file: where it is found, what it refuses, and connect()/--on by target name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from memory_provider import MemoryProvider

import vmkit
from vmkit import registry
from vmkit.cli import cli
from vmkit.spec import Workload
from vmkit.targets import load_targets

SECRET = "hunter2-do-not-print"


class RegionProvider(MemoryProvider):
    """A memory backend with a region option, shown as its location."""

    name = "regionmem"

    def __init__(
        self, *, region: str = "mem-1", poll_interval: float = 0.0, timeout: float = 10.0
    ) -> None:
        super().__init__(poll_interval=poll_interval, timeout=timeout)
        self.region = region

    @property
    def location(self) -> str:
        return self.region


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and config home of our own, no $VMKIT_CONFIG."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("VMKIT_CONFIG", raising=False)
    monkeypatch.delenv("VMKIT_PROVIDER", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    registry.register("regionmem", RegionProvider)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": None}, catch_exceptions=False)


# -------------------------------------------------------------------- lookup


def test_the_working_directory_wins_then_vmkit_config_then_the_user_config(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_targets().path is None
    assert len(load_targets()) == 0
    user = write(tmp_path / "xdg" / "vmkit" / "vmkit.yaml", "user: {provider: regionmem}\n")
    assert (load_targets().path, load_targets().names()) == (user, ["user"])
    env = write(tmp_path / "elsewhere.yaml", "from-env: {provider: regionmem}\n")
    monkeypatch.setenv("VMKIT_CONFIG", str(env))
    assert load_targets().names() == ["from-env"]
    local = write(isolated / "vmkit.yaml", "local: {provider: regionmem}\n")
    assert (load_targets().path, load_targets().names()) == (local, ["local"])


def test_the_user_config_defaults_to_home_dot_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path / "home" / ".config" / "vmkit" / "vmkit.yaml", "h: {provider: aws}\n")
    assert load_targets().path == path


def test_vmkit_config_naming_no_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMKIT_CONFIG", str(tmp_path / "typo.yaml"))
    with pytest.raises(vmkit.ConfigError, match=r"\$VMKIT_CONFIG is .*typo\.yaml"):
        load_targets()


def test_an_edited_file_is_read_again(isolated: Path) -> None:
    path = write(isolated / "vmkit.yaml", "one: {provider: regionmem}\n")
    assert load_targets().names() == ["one"]
    path.write_text("one: {provider: regionmem}\ntwo: {provider: regionmem}\n")
    os.utime(path, ns=(1, 1))
    assert load_targets().names() == ["one", "two"]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "target", "key"),
    [
        ("Prod_AWS: {provider: aws}\n", "Prod_AWS", "RFC 1123"),
        ("prod: aws\n", "prod", "'provider'"),
        ("prod: {region: eu-west-1}\n", "prod", "'provider' is missing"),
        ("prod: {provider: [aws]}\n", "prod", "'provider'"),
        ("prod: {provider: aws, 3: x}\n", "prod", "3"),
    ],
)
def test_invalid_targets_name_the_file_the_target_and_the_key(
    isolated: Path, body: str, target: str, key: str
) -> None:
    path = write(isolated / "vmkit.yaml", body)
    with pytest.raises(vmkit.ConfigError) as raised:
        load_targets()
    message = str(raised.value)
    assert message.startswith(f"{path}: target {target!r}")
    assert key in message


def test_a_file_that_is_not_a_mapping_or_not_yaml_is_refused(isolated: Path) -> None:
    path = write(isolated / "vmkit.yaml", "- aws\n- gcp\n")
    with pytest.raises(vmkit.ConfigError, match="mapping of target name"):
        load_targets()
    write(path, f"prod: {{provider: aws, region: [{SECRET}\n")
    with pytest.raises(vmkit.ConfigError, match=r"not valid YAML \(line 2") as raised:
        load_targets()
    assert SECRET not in str(raised.value)


def test_an_option_the_provider_does_not_take_names_file_target_and_key(isolated: Path) -> None:
    path = write(isolated / "vmkit.yaml", "prod: {provider: regionmem, regoin: eu-1}\n")
    with pytest.raises(vmkit.ConfigError) as raised:
        vmkit.connect("prod")
    assert str(raised.value).startswith(f"{path}: target 'prod': key 'regoin' is not an option")
    assert "accepted: poll_interval, region, timeout" in str(raised.value)


def test_an_unknown_provider_in_the_file_names_file_target_and_key(isolated: Path) -> None:
    path = write(isolated / "vmkit.yaml", "prod: {provider: nimbus}\n")
    with pytest.raises(vmkit.ConfigError) as raised:
        vmkit.connect("prod")
    assert str(raised.value).startswith(f"{path}: target 'prod': key 'provider': unknown provider")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        (f"token: {SECRET}", "token"),
        (f"password: {SECRET}", "password"),
        (f"aws_secret_access_key: {SECRET}", "aws_secret_access_key"),
        (f"aws_session_token: {SECRET}", "aws_session_token"),
        (f"client_secret: {SECRET}", "client_secret"),
        (f"credential: {SECRET}", "credential"),
        (f"DB_Password: {SECRET}", "DB_Password"),
        (f"auth: {{api_token: {SECRET}}}", "auth.api_token"),
    ],
)
def test_credentials_are_refused_without_echoing_the_value(
    isolated: Path, options: str, key: str
) -> None:
    path = write(isolated / "vmkit.yaml", f"prod: {{provider: aws, {options}}}\n")
    with pytest.raises(vmkit.ConfigError) as raised:
        load_targets()
    message = str(raised.value)
    assert message.startswith(f"{path}: target 'prod': key {key!r} holds a credential")
    assert "each SDK's own chain" in message
    assert SECRET not in message
    # Also when the file is found by connect() for any name.
    with pytest.raises(vmkit.ConfigError) as raised:
        vmkit.connect("regionmem")
    assert SECRET not in str(raised.value)


# ------------------------------------------------------------------ connect


def test_connect_a_target_merges_its_options_and_kwargs_win(isolated: Path) -> None:
    write(isolated / "vmkit.yaml", "prod: {provider: regionmem, region: eu-1, timeout: 3}\n")
    prod = vmkit.connect("prod")
    assert isinstance(prod, RegionProvider)
    assert (prod.location, prod.timeout) == ("eu-1", 3)
    other = vmkit.connect("prod", region="eu-2")
    assert (other.location, other.timeout) == ("eu-2", 3)
    assert vmkit.connect("regionmem").location == "mem-1", "a provider name still works"


def test_a_target_named_like_a_provider_is_the_target(isolated: Path) -> None:
    write(isolated / "vmkit.yaml", "regionmem: {provider: regionmem, region: from-file}\n")
    assert vmkit.connect("regionmem").location == "from-file"


def test_an_unknown_name_lists_providers_and_targets(isolated: Path) -> None:
    with pytest.raises(vmkit.ConfigError, match=r"installed providers: .*regionmem.*no targets"):
        vmkit.connect("nope")
    path = write(isolated / "vmkit.yaml", "prod: {provider: aws}\nstaging: {provider: gcp}\n")
    with pytest.raises(vmkit.ConfigError) as raised:
        vmkit.connect("nope")
    message = str(raised.value)
    assert message.startswith("unknown provider 'nope'; installed providers: ")
    assert "aws" in message
    assert "regionmem" in message
    assert message.endswith(f"targets in {path}: prod, staging")


def test_import_vmkit_does_not_read_the_targets_file(isolated: Path) -> None:
    write(isolated / "vmkit.yaml", "- not a targets file\n")
    code = textwrap.dedent("""
        import sys, vmkit
        vmkit.Machine
        print("yaml" in sys.modules)
        try:
            vmkit.connect("aws")
        except vmkit.ConfigError as exc:
            print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=isolated
    )
    imported, error = out.stdout.splitlines()
    assert imported == "False", "import vmkit reads no file"
    assert error.startswith(f"{isolated / 'vmkit.yaml'}: the targets file is a mapping")


# ---------------------------------------------------------------------- CLI


def test_on_takes_a_target_or_a_provider(isolated: Path) -> None:
    write(isolated / "vmkit.yaml", "prod: {provider: regionmem, region: eu-1}\n")
    result = run("ls", "--on", "prod", "-o", "json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
    spec = write(isolated / "web.yaml", "name: web\nreplicas: 2\n")
    result = run("deploy", str(spec), "--on", "prod", "-o", "json")
    assert result.exit_code == 0, result.output
    machines: list[dict[str, Any]] = json.loads(result.stdout)
    assert [(m["name"], m["location"]) for m in machines] == [("web-0", "eu-1"), ("web-1", "eu-1")]
    # A shorthand maps to the target's provider option and wins over the file.
    result = run("plan", str(spec), "--on", "prod", "--region", "eu-9")
    assert result.exit_code == 0, result.output
    assert "on regionmem (eu-9)" in result.stdout
    result = run("plan", str(spec), "--on", "regionmem", "-c", "region=eu-3")
    assert "on regionmem (eu-3)" in result.stdout
    result = run("ls", "--on", "prof")
    assert result.exit_code == 4
    assert "targets in" in result.stderr
    assert "prod" in result.stderr


def test_a_workload_deployed_on_a_target_is_the_same_as_through_connect(isolated: Path) -> None:
    write(isolated / "vmkit.yaml", "prod: {provider: regionmem, region: eu-1}\n")
    machines = vmkit.connect("prod").deploy(Workload(name="api", replicas=1))
    assert [(m.provider, m.location) for m in machines] == [("regionmem", "eu-1")]
