"""``vmkit sim serve``: the simulated clouds in one process, a pipeline in others.

The end-to-end test drives both sides as a CI job would: the server is
started in the background and waited for, the pipeline runs the ``vmkit``
command with the environment the server printed, and SIGTERM stops it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import vmkit
from vmkit import registry
from vmkit.cli import cli
from vmkit.testing.serve import (
    MARKER,
    SIM_TARGETS,
    SimSession,
    client_environment,
    serve_simulated_clouds,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "web.yaml"
TARGETS = list(SIM_TARGETS.values())
#: Seconds the server may take to start (about 3 on a 2-core machine).
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 120.0
SERVE = (sys.executable, "-m", "vmkit", "sim", "serve")


def _clean_environment() -> dict[str, str]:
    """This process's environment without anything that could point vmkit or
    boto3 at another targets file or account."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VMKIT_", "AWS_", "AZURE_", "GOOGLE_", "KUBECONFIG"))
    }


class Server:
    """A ``vmkit sim serve`` subprocess, started and waited for."""

    def __init__(self, workdir: Path) -> None:
        self.env_file = workdir / "sim.env"
        self.process = subprocess.Popen(
            [*SERVE, "--env-file", str(self.env_file), "-o", "json"],
            cwd=workdir,
            env=_clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.env_file.exists():
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                pytest.fail(f"vmkit sim serve exited {self.process.returncode}: {err}")
            if time.monotonic() > deadline:
                pytest.fail("vmkit sim serve was not ready in time")
            time.sleep(0.05)
        # The JSON line is printed before the env file is written.
        assert self.process.stdout is not None
        info: dict[str, Any] = json.loads(self.process.stdout.readline())
        return info

    def client_environment(self) -> dict[str, str]:
        """A client's environment: this process's, with what the server printed."""
        environment = _clean_environment()
        for key, value in self.info["environment"].items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        return environment

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit status and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=COMMAND_TIMEOUT)
        return self.process.returncode, err


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.communicate()


def vmkit_cli(
    argv_list: Sequence[Sequence[str]], env: Mapping[str, str], cwd: Path
) -> list[subprocess.CompletedProcess[str]]:
    """Run several ``vmkit`` commands at once, as a pipeline's parallel jobs would."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "vmkit", *argv],
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argv_list
    ]
    done = []
    for argv, process in zip(argv_list, processes, strict=True):
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        done.append(subprocess.CompletedProcess(list(argv), process.returncode, out, err))
    return done


def test_a_pipeline_deploys_lists_and_destroys_on_the_four_simulated_clouds(
    server: Server, tmp_path: Path
) -> None:
    info = server.info
    targets_file = Path(info["targets_file"])
    kubeconfig = Path(info["kubeconfig"])
    assert info["targets"] == TARGETS
    assert all(url.startswith("http://127.0.0.1:") for url in info["endpoints"].values())
    # The env file holds what the JSON sets, as KEY=VALUE lines.
    dotenv = dict(line.split("=", 1) for line in server.env_file.read_text().splitlines())
    assert dotenv == {k: v for k, v in info["environment"].items() if v is not None}
    assert dotenv["VMKIT_CONFIG"] == str(targets_file)
    assert dotenv["AWS_ACCESS_KEY_ID"] == "testing"
    # No secret in the targets file; the cluster token is in a private kubeconfig.
    assert targets_file.read_text().startswith(MARKER)
    assert set(vmkit.load_targets(targets_file).names()) == set(TARGETS)
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600

    env = server.client_environment()
    deployed = vmkit_cli(
        [("deploy", str(EXAMPLE), "--on", target, "-o", "json") for target in TARGETS],
        env,
        tmp_path,
    )
    for target, result in zip(TARGETS, deployed, strict=True):
        assert result.returncode == 0, f"{target}: {result.stderr}"
        machines = json.loads(result.stdout)
        assert [(m["name"], m["state"]) for m in machines] == [
            (f"web-{i}", "running") for i in range(3)
        ], target

    (listed,) = vmkit_cli([("ls", "-o", "json")], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert not [r for r in records if "error" in r]
    assert [(r["target"], r["name"]) for r in records] == [
        (target, f"web-{i}") for target in TARGETS for i in range(3)
    ]
    assert {r["target"]: r["kind"] for r in records} == {
        "sim-aws": "vm",
        "sim-gcp": "vm",
        "sim-azure": "vm",
        "sim-k8s": "container",
    }

    destroyed = vmkit_cli(
        [("destroy", "web", "--on", target, "--yes") for target in TARGETS], env, tmp_path
    )
    for target, result in zip(TARGETS, destroyed, strict=True):
        assert result.returncode == 0, f"{target}: {result.stderr}"
        assert result.stdout.count("deleted web-") == 3, target
        # destroy looks again and fails when anything of the workload is left.
        assert "\nnothing left of web on " in result.stdout, target

    status, err = server.stop()
    assert status == 0, err
    assert err.splitlines()[-1] == "vmkit sim: stopped"
    assert not targets_file.exists()
    assert not kubeconfig.exists()
    assert not server.env_file.exists()


def test_serve_refuses_to_overwrite_a_targets_file_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "vmkit.yaml"
    mine.write_text("prod-aws: {provider: aws, region: eu-west-1}\n")
    result = CliRunner().invoke(cli, ["sim", "serve", "--targets-file", str(mine)])
    assert result.exit_code == 4
    assert "was not written by vmkit sim serve" in result.stderr
    assert mine.read_text() == "prod-aws: {provider: aws, region: eu-west-1}\n"


@pytest.mark.parametrize(
    ("provider", "options"),
    [
        ("gcp", {"project": "p", "zone": "us-central1-a"}),
        ("azure", {"subscription_id": "s", "resource_group": "rg", "location": "eastus"}),
    ],
)
def test_anonymous_auth_needs_an_explicit_endpoint(
    provider: str, options: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(vmkit.ConfigError, match="auth 'anonymous' needs an endpoint"):
        vmkit.connect(provider, auth="anonymous", **options)
    with pytest.raises(vmkit.ConfigError, match="auth must be 'default' or 'anonymous'"):
        vmkit.connect(provider, auth="none", endpoint="http://127.0.0.1:9", **options)
    assert registry.load(provider).credentials_status(auth="anonymous", **options) == (
        "auth 'anonymous' needs an endpoint"
    )
    # From a targets file, where it is the way to reach an emulator.
    targets = tmp_path / "targets.yaml"
    body = ", ".join(f"{k}: {v}" for k, v in options.items())
    targets.write_text(f"emulated: {{provider: {provider}, auth: anonymous, {body}}}\n")
    result = CliRunner().invoke(cli, ["ls", "--on", "emulated"], env={"VMKIT_CONFIG": str(targets)})
    assert result.exit_code == 4
    assert "auth 'anonymous' needs an endpoint" in result.stderr


def test_serving_in_process_with_latency_and_a_chosen_targets_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets_file = tmp_path / "sim.yaml"
    monkeypatch.setenv("VMKIT_CONFIG", str(targets_file))
    targets_file.write_text(f"{MARKER} by an earlier run\nold: {{provider: aws}}\n")
    with serve_simulated_clouds(targets_file, latency=0.2) as session:
        assert session.targets_file == targets_file, "its own earlier file is overwritten"
        assert session.kubeconfig == tmp_path / "sim.kubeconfig"
        assert vmkit.load_targets(targets_file).names() == TARGETS
        for target in ("sim-gcp", "sim-k8s"):
            provider = vmkit.connect(target)
            started = time.monotonic()
            assert provider.list() == []
            assert time.monotonic() - started >= 0.2, f"{target} answered without the latency"
    assert not targets_file.exists()
    assert not session.kubeconfig.exists()


def test_the_printed_shell_lines_set_up_a_client_environment(tmp_path: Path) -> None:
    targets_file = tmp_path / "dir with spaces" / "vmkit.yaml"
    session = SimSession(
        targets_file=targets_file,
        kubeconfig=targets_file.with_suffix(".kubeconfig"),
        targets={},
        endpoints={},
        environment=client_environment(targets_file),
    )
    script = session.shell() + 'printf "%s|%s|%s" "$VMKIT_CONFIG" "${AWS_PROFILE-unset}" '
    script += '"$AWS_ACCESS_KEY_ID"'
    shell = subprocess.run(
        ["sh", "-c", script],
        env={**_clean_environment(), "AWS_PROFILE": "prod"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == f"{targets_file}|unset|testing"
    assert "MOTO_" not in session.shell(), "moto's settings are the server's, not the client's"
    assert session.dotenv().splitlines()[0] == f"VMKIT_CONFIG={targets_file}"
