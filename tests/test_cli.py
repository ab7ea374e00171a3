"""The vmkit command line, driven as a user drives it.

Most tests run against ``CloudProvider``: the in-memory reference provider
(tests/memory_provider.py) with its state kept in a ``Cloud`` shared by every
connect(), as a cloud's state outlives each CLI invocation, machines that
boot over a few listings, and errors the cloud raises on demand.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result
from memory_provider import MemoryProvider
from rich.console import Console

import vmkit
from vmkit import registry
from vmkit.cli import _app, cli
from vmkit.cli._demo import DemoTarget, run_demo
from vmkit.machine import Machine, MachineState, Orphan, Snapshot
from vmkit.provider import WORKLOAD_TAG, CreateRequest
from vmkit.spec import Workload
from vmkit.testing.sim import simulated_aws

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "web.yaml"
#: The Machine fields of DESIGN.md, as ``-o json`` shows them (``raw`` left out).
MACHINE_FIELDS = {
    "id", "name", "provider", "kind", "workload", "replica", "state", "size", "image",
    "location", "private_ip", "public_ip", "labels", "created_at",
}  # fmt: skip


@dataclass
class Cloud:
    """What outlives one CLI invocation: the machines, snapshots, keys."""

    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, list[str]] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)
    snaps: dict[str, Snapshot] = field(default_factory=dict)
    next_id: int = 0
    #: The options of every connect(), in order.
    connects: list[dict[str, Any]] = field(default_factory=list)
    #: Operation ("list", "get", "create", "logs") -> the error it raises.
    faults: dict[str, Exception] = field(default_factory=dict)
    credentials_problem: str | None = None

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class CloudProvider(MemoryProvider):
    """MemoryProvider over a shared Cloud; new machines boot for ``boot_rounds`` listings."""

    cloud: ClassVar[Cloud]

    def __init__(
        self,
        *,
        region: str = "mem-1",
        profile: str | None = None,
        endpoint_url: str | None = None,
        boot_rounds: int = 1,
        poll_interval: float = 0.01,
        timeout: float = 10.0,
    ) -> None:
        given = locals()
        self.cloud.connects.append({k: given[k] for k in given if k not in ("self", "__class__")})
        super().__init__(poll_interval=poll_interval, timeout=timeout)
        self.region = region
        self.boot_rounds = boot_rounds
        self.machines = self.cloud.machines
        self.tokens = self.cloud.tokens
        self.shared = self.cloud.shared
        self.snaps = self.cloud.snaps
        self._ids = iter(self.cloud.new_id, None)

    @property
    def location(self) -> str:
        return self.region

    @classmethod
    def credentials_status(cls, **config: Any) -> str | None:
        return cls.cloud.credentials_problem

    def _fault(self, operation: str) -> None:
        if operation in self.cloud.faults:
            raise self.cloud.faults[operation]

    def _list(self, workload: str | None) -> list[Machine]:
        self._fault("list")
        for record in self.machines.values():
            if record.get("boots_left", 0) > 0:
                record["boots_left"] -= 1
                if record["boots_left"] == 0:
                    record["state"] = MachineState.RUNNING
        return super()._list(workload)

    def _get(self, machine_id: str) -> Machine:
        self._fault("get")
        return super()._get(machine_id)

    def _create(self, workload: Workload, request: CreateRequest) -> list[Machine]:
        self._fault("create")
        created = super()._create(workload, request)
        if self.boot_rounds > 0:
            for machine in created:
                record = self.machines[machine.id]
                record["state"], record["boots_left"] = MachineState.PENDING, self.boot_rounds
        return [self._machine(self.machines[m.id]) for m in created]

    def _logs(self, machine: Machine) -> str:
        self._fault("logs")
        return super()._logs(machine)

    def _orphans(self, workload: str | None) -> list[Orphan]:
        self._fault("gc")
        return super()._orphans(workload)


class PodProvider(CloudProvider):
    """A backend without the optional operations, and with its own options."""

    capabilities = frozenset()

    def __init__(self, *, namespace: str = "default") -> None:
        super().__init__(region=namespace)


@pytest.fixture
def cloud() -> Cloud:
    cloud = Cloud()
    CloudProvider.cloud = cloud
    registry.register("memory", CloudProvider)
    registry.register("memory-pods", PodProvider)
    return cloud


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    # As in a pipe or a CI log: no COLUMNS (pytest-xdist workers may set one).
    environment: dict[str, str | None] = {"COLUMNS": None, **(env or {})}
    return CliRunner().invoke(cli, list(args), input=input, env=environment, catch_exceptions=False)


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    """Run with ``-o json``; stdout must be exactly one JSON document."""
    return json.loads(ok(*args, "-o", "json").stdout)


def deploy(*extra: str, spec: Path = EXAMPLE) -> list[dict[str, Any]]:
    machines: list[dict[str, Any]] = as_json("deploy", str(spec), "--on", "memory", *extra)
    return machines


def error_line(result: Result) -> str:
    """The one line a failed command printed, checked to be the only output."""
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------- deploy


def test_deploy_shows_each_replica_booting_then_the_fleet(cloud: Cloud) -> None:
    result = ok("deploy", str(EXAMPLE), "--on", "memory", "-c", "boot_rounds=3")
    table = result.stdout.splitlines()
    header = table[0].split()
    assert header[:6] == ["provider", "location", "workload", "name", "id", "kind"]
    assert [" ".join(header[6:])] == ["state size private ip public ip age"]
    rows = [line.split() for line in table[2:]]
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in rows] == [
        ("memory", "mem-1", "web", f"web-{i}", "running") for i in range(3)
    ]
    # Not a terminal: plain progress lines on stderr, each state change once.
    progress = result.stderr.splitlines()
    for i in range(3):
        states = [line.split()[2] for line in progress if line.startswith(f"web-{i} ")]
        assert states == ["pending", "running"]
    assert "\x1b[" not in result.output
    assert {r["state"] for r in cloud.machines.values()} == {MachineState.RUNNING}


def test_deploy_is_idempotent_and_json_has_the_machine_fields(cloud: Cloud) -> None:
    first = deploy()
    assert [m["name"] for m in first] == ["web-0", "web-1", "web-2"]
    assert all(set(m) == MACHINE_FIELDS for m in first)
    assert {m["state"] for m in first} == {"running"}
    assert first[0]["labels"] == {"team": "demo"}
    second = deploy()
    assert [m["id"] for m in second] == [m["id"] for m in first]
    assert len(cloud.machines) == 3


def test_deploy_no_wait_returns_pending_machines(cloud: Cloud) -> None:
    machines = deploy("--no-wait", "-c", "boot_rounds=5")
    assert {m["state"] for m in machines} == {"pending"}


def test_deploy_timeout_names_the_pending_replicas_and_exits_6(cloud: Cloud) -> None:
    args = ("deploy", str(EXAMPLE), "--on", "memory", "-c", "boot_rounds=1000000")
    result = run(*args, "--timeout", "0.2")
    assert result.exit_code == 6
    assert "Traceback" not in result.output
    last = result.stderr.splitlines()[-1]
    assert last == "error: web: still pending at the deadline: web-0, web-1, web-2"


def test_a_spec_error_names_the_field_and_exits_3_before_connecting(
    cloud: Cloud, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, "name: web\nresources: {memory: '4096'}\n")
    result = run("deploy", str(spec), "--on", "memory")
    assert result.exit_code == 3
    assert error_line(result).startswith("error: resources.memory: '4096' has no unit")
    assert cloud.connects == []
    result = run("plan", str(spec), "--on", "memory")
    assert result.exit_code == 3
    assert cloud.connects == []


def test_an_unknown_field_and_a_missing_file_are_spec_errors(cloud: Cloud, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "name: web\nreplica: 3\n")
    result = run("deploy", str(spec), "--on", "memory")
    assert (result.exit_code, error_line(result)) == (3, "error: replica: unknown field")
    result = run("deploy", str(tmp_path / "absent.yaml"), "--on", "memory")
    assert result.exit_code == 3
    assert "absent.yaml" in error_line(result)


# --------------------------------------------------------------------- plan


def test_plan_shows_actions_and_the_exact_requests(cloud: Cloud) -> None:
    text = ok("plan", str(EXAMPLE), "--on", "memory").stdout
    assert "plan for web on memory (mem-1): 3 to create, 0 to keep" in text
    assert "request 1: memory:Run (replicas 0, 1, 2)" in text
    assert "Count: 3" in text
    plan = as_json("plan", str(EXAMPLE), "--on", "memory")
    assert [(a["replica"], a["action"]) for a in plan["actions"]] == [
        (0, "create"),
        (1, "create"),
        (2, "create"),
    ]
    assert plan["requests"][0]["body"]["Count"] == 3
    assert cloud.machines == {}
    deploy()
    assert "nothing to change" in ok("plan", str(EXAMPLE), "--on", "memory").stdout
    kept = as_json("plan", str(EXAMPLE), "--on", "memory")
    assert {a["action"] for a in kept["actions"]} == {"keep"}
    assert kept["requests"] == []


# ----------------------------------------------------------- list and show


def test_ls_lists_every_workload_or_one(cloud: Cloud, tmp_path: Path) -> None:
    deploy()
    deploy(spec=write_spec(tmp_path, "name: api\nreplicas: 1\n"))
    everything = as_json("ls", "--on", "memory")
    assert [m["name"] for m in everything] == ["api-0", "web-0", "web-1", "web-2"]
    assert [m["name"] for m in as_json("ls", "--on", "memory", "--workload", "api")] == ["api-0"]
    assert as_json("ls", "--on", "memory", "-w", "nothing") == []
    table = ok("ls", "--on", "memory").stdout
    assert all(name in table for name in ("api-0", "web-2", "private ip", "public ip", "age"))
    assert ok("ls", "--on", "memory", "-w", "nothing").stdout == "no managed machines\n"


def test_show_one_machine(cloud: Cloud) -> None:
    web0 = deploy()[0]
    shown = as_json("show", web0["id"], "--on", "memory")
    assert shown == {**web0, "state": "running"}
    table = ok("show", web0["id"], "--on", "memory").stdout
    assert "team=demo" in table
    assert "web-0" in table


# ---------------------------------------------------------------- lifecycle


def test_stop_start_reboot_report_the_new_state(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    assert (
        ok("stop", machine_id, "--on", "memory").stdout
        == f"stopped web-0 ({machine_id}): stopped\n"
    )
    assert cloud.machines[machine_id]["state"] == MachineState.STOPPED
    assert ok("start", machine_id, "--on", "memory").stdout.endswith(": running\n")
    assert cloud.machines[machine_id]["state"] == MachineState.RUNNING
    assert ok("reboot", machine_id, "--on", "memory").stdout.startswith("rebooted web-0")


def test_rm_deletes_and_refuses_an_unknown_id(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    assert ok("rm", machine_id, "--on", "memory").stdout == f"deleted web-0 ({machine_id})\n"
    assert machine_id not in cloud.machines
    result = run("rm", machine_id, "--on", "memory")
    assert result.exit_code == 5
    assert machine_id in error_line(result)
    assert ok("rm", machine_id, "--on", "memory", "--ignore-not-found").stdout.endswith("gone\n")


def test_snapshot_and_list_snapshots(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    assert ok("snapshot", machine_id, "before", "--on", "memory").stdout.startswith(
        "snapshot before ("
    )
    later = as_json("snapshot", machine_id, "after", "--on", "memory")
    assert (later["name"], later["machine_id"], later["workload"]) == ("after", machine_id, "web")
    listed = as_json("snapshots", "--on", "memory", "--workload", "web")
    assert {s["name"] for s in listed} == {"before", "after"}
    assert "before" in ok("snapshots", "--on", "memory").stdout
    assert as_json("snapshots", "--on", "memory", "-w", "other") == []
    result = run("snapshot", machine_id, "", "--on", "memory")
    assert result.exit_code == 3


def test_logs_prints_the_console_output(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    assert ok("logs", machine_id, "--on", "memory").stdout == "booted web-0\n"


def test_destroy_removes_machines_and_with_snapshots_the_snapshots(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    ok("snapshot", machine_id, "keep-me", "--on", "memory")
    out = ok("destroy", "web", "--on", "memory").stdout
    assert [line.split(" (")[0] for line in out.splitlines()] == [
        "deleted web-0",
        "deleted web-1",
        "deleted web-2",
        "nothing left of web on memory",
    ]
    assert cloud.machines == {}
    assert len(cloud.snaps) == 1, "snapshots are backups: kept without --snapshots"
    out = ok("destroy", "web", "--on", "memory", "--snapshots").stdout
    assert out == "deleted 1 snapshot(s)\nnothing left of web on memory\n"
    assert cloud.snaps == {}


def test_destroy_asks_first_on_a_terminal(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    deploy()
    monkeypatch.setattr(_app, "_interactive", lambda: True)
    refused = run("destroy", "web", "--on", "memory", input="n\n")
    assert refused.exit_code == 1
    assert "Destroy web: 3 machine(s) on memory (mem-1)?" in refused.stderr
    assert len(cloud.machines) == 3
    assert run("destroy", "web", "--on", "memory", input="y\n").exit_code == 0
    assert cloud.machines == {}
    deploy()
    assert ok("destroy", "web", "--on", "memory", "--yes").stdout.endswith("on memory\n")
    assert cloud.machines == {}


# ----------------------------------------------------------------------- gc

#: The fields of a ``vmkit gc -o json`` record of an orphan.
ORPHAN_FIELDS = {"target", "kind", "id", "name", "provider", "workload", "reason", "deleted"}


def orphan_fleet(cloud: Cloud, tmp_path: Path) -> None:
    """Two workloads whose machines were all removed one by one (``vmkit rm``),
    which leaves their shared resources behind, and one still running."""
    for name in ("web", "api", "db"):
        spec = write_spec(tmp_path, f"name: {name}\nreplicas: 2\n", name=f"{name}.yaml")
        deploy(spec=spec)
    for machine_id, record in list(cloud.machines.items()):
        if record["tags"][WORKLOAD_TAG] != "db":
            ok("rm", machine_id, "--on", "memory")


def test_gc_dry_run_lists_the_orphans_and_gc_deletes_them(cloud: Cloud, tmp_path: Path) -> None:
    orphan_fleet(cloud, tmp_path)
    found = as_json("gc", "--on", "memory", "--dry-run")
    assert all(set(record) == ORPHAN_FIELDS for record in found)
    assert [(r["target"], r["kind"], r["name"], r["deleted"]) for r in found] == [
        ("memory", "shared", "api", False),
        ("memory", "shared", "web", False),
    ]
    assert cloud.shared == {"web", "api", "db"}, "a dry run deletes nothing"
    table = ok("gc", "--on", "memory", "--dry-run").stdout
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["target", "provider", "workload", "kind", "name", "action", "reason", "id"]
    assert rows[2][:5] == ["memory", "memory", "api", "shared", "api"]
    assert " ".join(rows[2][5:]) == "would delete no machine of the workload api"
    assert table.endswith("2 orphaned resource(s) would be deleted (dry run)\n")

    out = ok("gc", "--on", "memory").stdout
    assert out.endswith("deleted 2 orphaned resource(s)\n")
    assert cloud.shared == {"db"}, "the running workload keeps its shared resources"
    assert len(cloud.machines) == 2
    assert ok("gc", "--on", "memory").stdout == "no orphaned resources\n"
    assert as_json("gc", "--on", "memory") == []


def test_gc_of_one_workload_leaves_the_others(cloud: Cloud, tmp_path: Path) -> None:
    orphan_fleet(cloud, tmp_path)
    deleted = as_json("gc", "--on", "memory", "--workload", "web")
    assert [(r["workload"], r["deleted"]) for r in deleted] == [("web", True)]
    assert cloud.shared == {"api", "db"}


def test_gc_asks_first_on_a_terminal(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan_fleet(cloud, tmp_path)
    monkeypatch.setattr(_app, "_interactive", lambda: True)
    refused = run("gc", "--on", "memory", input="n\n")
    assert refused.exit_code == 1
    assert "would delete" in refused.stdout, "what would go is shown before the question"
    assert "Delete these 2 resource(s)?" in refused.stderr
    assert cloud.shared == {"web", "api", "db"}
    assert run("gc", "--on", "memory", input="y\n").exit_code == 0
    assert cloud.shared == {"db"}


def test_gc_errors_keep_their_exit_status(cloud: Cloud, tmp_path: Path) -> None:
    orphan_fleet(cloud, tmp_path)
    cloud.faults["gc"] = vmkit.AuthError("the credentials were refused")
    result = run("gc", "--on", "memory")
    assert (result.exit_code, error_line(result)) == (5, "error: the credentials were refused")
    result = run("gc")
    assert result.exit_code == 4
    assert error_line(result).startswith("error: no targets file: write a vmkit.yaml")


def test_gc_without_on_sweeps_every_target_and_reports_the_one_that_fails(
    cloud: Cloud, tmp_path: Path
) -> None:
    orphan_fleet(cloud, tmp_path)
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "blue: {provider: memory, region: blue-1}\nbroken: {provider: no-such-backend}\n"
    )
    env = {"VMKIT_CONFIG": str(targets)}
    result = run("gc", "--dry-run", "-o", "json", env=env)
    assert result.exit_code == 5
    records = json.loads(result.stdout)
    assert [(r["target"], r.get("workload")) for r in records] == [
        ("blue", "api"),
        ("blue", "web"),
        ("broken", None),
    ]
    assert records[2]["provider"] == "no-such-backend"
    assert records[2]["error_type"] == "ConfigError"
    assert "unknown provider 'no-such-backend'" in records[2]["error"]
    table = run("gc", "--yes", env=env)
    assert table.exit_code == 5
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[3][:6] == ["blue", "memory", "web", "shared", "web", "deleted"]
    assert rows[4][:3] == ["broken", "no-such-backend", "error"]
    # The message wraps with the width of the temporary path: read it whole.
    assert "unknown provider" in " ".join(word for row in rows[4:] for word in row)
    assert cloud.shared == {"db"}, "the target that answered was swept all the same"


# ----------------------------------------------------------- configuration


def test_provider_options_reach_connect_typed(cloud: Cloud) -> None:
    ok(
        "ls", "--on", "memory", "--region", "eu-1", "--profile", "dev",
        "--endpoint", "http://127.0.0.1:9", "-c", "poll_interval=0.5", "-c", "boot_rounds=3",
    )  # fmt: skip
    options = cloud.connects[-1]
    assert options == {
        "region": "eu-1",
        "profile": "dev",
        "endpoint_url": "http://127.0.0.1:9",
        "boot_rounds": 3,
        "poll_interval": 0.5,
        "timeout": 10.0,
    }
    assert isinstance(options["poll_interval"], float)
    ok("ls", "--on", "memory", "--region", "eu-1", "-c", "region=eu-2")
    assert cloud.connects[-1]["region"] == "eu-2", "-c wins over a shorthand"


def test_the_provider_can_come_from_the_environment(cloud: Cloud) -> None:
    result = run("ls", "-o", "json", env={"VMKIT_PROVIDER": "memory"})
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_unknown_provider_exits_4_listing_the_known_ones(cloud: Cloud) -> None:
    result = run("ls", "--on", "nope")
    assert result.exit_code == 4
    line = error_line(result)
    assert line.startswith("error: unknown provider 'nope'; installed providers:")
    assert "memory" in line


def test_unknown_or_misspelt_options_exit_4(cloud: Cloud) -> None:
    result = run("ls", "--on", "memory", "-c", "regoin=x")
    assert result.exit_code == 4
    assert "unknown option(s) regoin; accepted:" in error_line(result)
    result = run("ls", "--on", "memory-pods", "--endpoint", "http://127.0.0.1:9")
    assert result.exit_code == 4
    assert "--endpoint is not an option" in error_line(result)


def test_malformed_config_is_a_usage_error(cloud: Cloud) -> None:
    result = run("ls", "--on", "memory", "-c", "novalue")
    assert result.exit_code == 2
    assert "'novalue' is not key=value" in result.stderr
    assert run("ls", "-c", "region=x").exit_code == 2, "-c needs --on"


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "error",
    [
        vmkit.AuthError("the credentials were refused (AuthFailure)"),
        vmkit.QuotaExceeded("vCPU limit reached"),
        vmkit.Throttled("still throttled after 8 attempts"),
        vmkit.NotFound("no such thing"),
        vmkit.ProviderError("the cloud said no"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_provider_errors_exit_5_with_one_line(cloud: Cloud, error: vmkit.ProviderError) -> None:
    cloud.faults["list"] = error
    result = run("ls", "--on", "memory")
    assert (result.exit_code, error_line(result)) == (5, f"error: {error}")


def test_a_failed_create_exits_5(cloud: Cloud) -> None:
    cloud.faults["create"] = vmkit.QuotaExceeded("InstanceLimitExceeded: too many instances")
    result = run("deploy", str(EXAMPLE), "--on", "memory")
    assert result.exit_code == 5
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ")
    assert "InstanceLimitExceeded: too many instances" in last


def test_an_unsupported_operation_exits_5(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    result = run("stop", machine_id, "--on", "memory-pods")
    assert (result.exit_code, error_line(result)) == (5, "error: memory does not support stop")


def test_unexpected_errors_exit_1_and_show_a_traceback_only_in_debug(cloud: Cloud) -> None:
    machine_id = deploy()[0]["id"]
    cloud.faults["logs"] = RuntimeError("backend bug")
    result = run("logs", machine_id, "--on", "memory")
    assert result.exit_code == 1
    assert error_line(result) == (
        "error: unexpected RuntimeError: backend bug (run with --debug for the traceback)"
    )
    with_flag = run("--debug", "logs", machine_id, "--on", "memory")
    with_env = run("logs", machine_id, "--on", "memory", env={"VMKIT_DEBUG": "1"})
    for debug in (with_flag, with_env):
        assert debug.exit_code == 1
        assert "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.endswith("error: unexpected RuntimeError: backend bug\n")


# -------------------------------------------------------------- reference


def _plugin(tmp_path: Path) -> Path:
    """An installed distribution whose backend's module is missing."""
    info = tmp_path / "vmkit_broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vmkit-broken-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[vmkit.providers]\nbroken = vmkit_absent_sdk:Backend\n")
    return tmp_path


def test_providers_tells_what_loads_and_what_has_credentials(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(_plugin(tmp_path)))
    cloud.credentials_problem = "no credentials in the environment"
    statuses = {s["name"]: s for s in as_json("providers")}
    assert statuses["memory"] == {
        "name": "memory",
        "loads": True,
        "error": None,
        "credentials_ok": False,
        "credentials": "no credentials in the environment",
    }
    broken = statuses["broken"]
    assert not broken["loads"]
    assert 'pip install --upgrade "vmkit-broken-plugin"' in broken["error"]
    table = ok("providers").stdout
    assert "no credentials in the environment" in table
    cloud.credentials_problem = None
    assert {s["name"]: s["credentials_ok"] for s in as_json("providers")}["memory"] is True
    result = run("ls", "--on", "broken")
    assert result.exit_code == 4
    assert "vmkit_absent_sdk" in error_line(result)


def test_schema_is_the_workload_json_schema() -> None:
    schema = json.loads(ok("schema").stdout)
    assert schema["properties"]["name"]["maxLength"] == 40
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert {"Resources", "Port"} <= set(schema["$defs"])


def test_python_m_vmkit_exits_with_the_documented_codes() -> None:
    def python_m(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "vmkit", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    failed = python_m("ls", "--on", "no-such-cloud")
    assert failed.returncode == 4
    assert failed.stdout == ""
    assert failed.stderr.startswith("error: unknown provider 'no-such-cloud'")
    assert failed.stderr.count("\n") == 1
    assert python_m("--version").stdout.strip() == f"vmkit, version {vmkit.__version__}"


# --------------------------------------------------------------------- demo


def test_demo_runs_a_workload_through_its_life(cloud: Cloud, tmp_path: Path) -> None:
    out, progress = tmp_path / "out.txt", tmp_path / "progress.txt"
    targets: Sequence[DemoTarget] = [
        DemoTarget("memory (in-process)", "memory", lambda: nullcontext({"boot_rounds": 2}))
    ]
    with out.open("w") as stdout, progress.open("w") as stderr:
        run_demo(
            EXAMPLE,
            console=Console(file=stdout, width=200),
            progress=Console(file=stderr, width=200),
            targets=list(targets),
        )
    text = out.read_text()
    fleet = [line.split() for line in text.splitlines() if line.startswith("memory (in-process)")]
    assert [row[5] for row in fleet if len(row) > 5] == ["web-0", "web-1", "web-2"]
    assert "stopped web-0" in text
    assert "started web-0" in text
    assert ": stopped" in text
    assert ": running" in text
    assert "snapshot before-upgrade (s-" in text
    assert "restored web-0 from before-upgrade: kept its name, running" in text
    assert "removed 3 machine(s)" in text
    assert "kept 1 snapshot(s), as backups: before-upgrade" in text
    assert "deleted 1 snapshot(s)" in text
    assert text.rstrip().endswith("nothing left of web on memory (in-process)")
    assert "web-2" in progress.read_text()
    assert cloud.machines == {}
    assert cloud.snaps == {}


def test_demo_names_a_missing_spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("demo")
    assert result.exit_code == 2
    assert "no spec file at examples/web.yaml" in result.stderr


# ---------------------------------------------------------------------- aws


@pytest.fixture
def aws_cli(aws_config: dict[str, Any]) -> list[str]:
    """The CLI's provider options for a simulated AWS account (moto, in-process)."""
    poll = aws_config["poll_interval"]
    return ["--on", "aws", "--region", aws_config["region"], "-c", f"poll_interval={poll}"]


def test_a_fleet_on_aws_through_the_cli(aws_cli: list[str]) -> None:
    machines = as_json("deploy", str(EXAMPLE), *aws_cli)
    assert [(m["name"], m["state"], m["kind"]) for m in machines] == [
        (f"web-{i}", "running", "vm") for i in range(3)
    ]
    assert all(m["location"].startswith("us-east-1") and m["size"] for m in machines)
    web0 = machines[0]["id"]
    assert [m["id"] for m in as_json("ls", *aws_cli, "-w", "web")] == [m["id"] for m in machines]
    assert ok("stop", web0, *aws_cli).stdout == f"stopped web-0 ({web0}): stopped\n"
    assert as_json("show", web0, *aws_cli)["state"] == "stopped"
    assert "nothing to change" in ok("plan", str(EXAMPLE), *aws_cli).stdout, "a stop is kept"
    snap = as_json("snapshot", web0, "before", *aws_cli)
    assert snap["id"].startswith("ami-")
    assert [s["id"] for s in as_json("snapshots", *aws_cli, "-w", "web")] == [snap["id"]]
    out = ok("destroy", "web", *aws_cli, "--snapshots").stdout
    assert out.endswith("deleted 1 snapshot(s)\nnothing left of web on aws\n")
    assert as_json("ls", *aws_cli) == []
    assert as_json("snapshots", *aws_cli) == []


def test_aws_errors_keep_their_exit_status(
    aws_cli: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("show", "i-0123456789abcdef0", *aws_cli)
    assert result.exit_code == 5
    assert "i-0123456789abcdef0" in error_line(result)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = run("ls", "--on", "aws")
    assert result.exit_code == 4
    assert "region is required" in error_line(result)


#: Where boto3's chain looks besides files and instance metadata.
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def test_providers_reports_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated_aws():
        statuses = {s["name"]: s for s in as_json("providers")}
    assert statuses["aws"]["loads"] is True
    assert statuses["aws"]["credentials_ok"] is True
    for name in AWS_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws = {s["name"]: s for s in as_json("providers")}["aws"]
    assert aws["credentials_ok"] is False
    assert "no AWS credentials" in aws["credentials"]


def test_demo_runs_end_to_end_on_every_simulated_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = ok("demo")
    out = result.stdout
    for label, kind in [
        ("aws (moto)", "vm"),
        ("gcp (fake)", "vm"),
        ("azure (fake)", "vm"),
        ("kubernetes (fake)", "container"),
    ]:
        rows = [line.split() for line in out.splitlines() if line.startswith(f"{label} ")]
        fleet = [r for r in rows if len(r) > 8 and r[len(label.split())] == label.split()[0]]
        names = [next(t for t in r if t.startswith("web-")) for r in fleet]
        assert names == [f"web-{i}" for i in range(3)], label
        assert all(kind in r and "running" in r for r in fleet), label
        assert f"nothing left of web on {label}" in out
    assert "stopped web-0" in out
    assert "snapshot before-upgrade (ami-" in out
    assert "kubernetes cannot stop machines: skipped" in out
    # The simulated cluster has gVisor's RuntimeClass: the same workload, one field changed.
    assert (
        'redeployed web with isolation="sandbox": web-0, web-1, web-2 now run under '
        "RuntimeClass gvisor"
    ) in out
    assert out.count("removed 3 machine(s)") == 4
    # Each VM rolled back: same name and private IP, on a new boot disk.
    rollbacks = re.findall(
        r"^restored web-0 from before-upgrade: kept its name and private IP [\d.]+, "
        r"boot disk (\S+) -> (\S+), running$",
        out,
        flags=re.MULTILINE,
    )
    assert len(rollbacks) == 3, out
    assert all(before != after for before, after in rollbacks)
    assert out.count("kept 1 snapshot(s), as backups: before-upgrade") == 3
    assert out.count("deleted 1 snapshot(s)") == 3


def test_the_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "deploy_web.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "plan: [(0, 'create'), (1, 'create'), (2, 'create')]"
    assert [line.split()[0] for line in lines[1:4]] == ["web-0", "web-1", "web-2"]
    assert lines[4:] == [
        "redeploy kept the same machines: True",
        "destroyed 3 machines; left: []",
    ]
