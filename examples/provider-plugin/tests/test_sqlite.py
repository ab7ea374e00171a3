"""What is specific to the sqlite backend: the file is shared by every
connection and process, creates honour their idempotency key, states follow a
simulated boot, and a locked database is retried, then reported."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from vmkit_sqlite import SqliteProvider

import vmkit
from vmkit.errors import ConfigError, DeployTimeout, ProviderError, SpecError, Throttled
from vmkit.machine import MachineState
from vmkit.registry import load

WEB_YAML = """\
name: web
image: nginx:1.27
ports: [80]
resources: {cpu: 2, memory: 4GiB}
replicas: 3
labels: {team: demo}
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fleet.sqlite"


def connect(db: Path, **options: Any) -> SqliteProvider:
    options.setdefault("boot_delay", 0.05)
    options.setdefault("poll_interval", 0.01)
    provider = vmkit.connect("sqlite", path=db, **options)
    assert isinstance(provider, SqliteProvider)
    return provider


def workload(name: str = "web", replicas: int = 2, **fields: Any) -> vmkit.Workload:
    return vmkit.Workload(name=name, image="nginx:1.27", replicas=replicas, ports=[80], **fields)


def cli(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``vmkit ARGS --on sqlite -c path=DB`` in a new process."""
    command = [sys.executable, "-m", "vmkit", *args, "--on", "sqlite", "-c", f"path={db}"]
    command += ["-c", "boot_delay=0.05", "-c", "poll_interval=0.02"]
    env = {k: v for k, v in os.environ.items() if k != "VMKIT_PROVIDER"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


@contextmanager
def write_lock(db: Path, *, release_after: float | None = None) -> Iterator[None]:
    """Hold the database's write lock, as another process would, until the
    block ends (or ``release_after`` seconds)."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            holder.execute("ROLLBACK")

    timer = threading.Timer(release_after, release) if release_after is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.join()
        release()
        holder.close()


# ------------------------------------------------------------------ plumbing


def test_the_entry_point_makes_the_backend_available() -> None:
    assert "sqlite" in vmkit.available()
    assert load("sqlite") is SqliteProvider
    (point,) = [p for p in metadata.entry_points(group="vmkit.providers") if p.name == "sqlite"]
    assert point.dist is not None
    assert point.dist.name == "vmkit-sqlite"


def test_the_path_defaults_to_the_environment_then_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMKIT_SQLITE_PATH", str(tmp_path / "env.db"))
    assert vmkit.connect("sqlite").location == str(tmp_path / "env.db")
    monkeypatch.delenv("VMKIT_SQLITE_PATH")
    monkeypatch.setenv("HOME", str(tmp_path))
    provider = vmkit.connect("sqlite", boot_delay=0)
    assert provider.location == str(tmp_path / ".local/share/vmkit/sqlite.db")
    provider.deploy(workload(replicas=1))
    assert (tmp_path / ".local/share/vmkit/sqlite.db").is_file()


def test_bad_options_are_config_errors(db: Path) -> None:
    with pytest.raises(ConfigError, match="memory"):
        vmkit.connect("sqlite", path=":memory:")
    with pytest.raises(ConfigError, match="boot_delay"):
        vmkit.connect("sqlite", path=db, boot_delay=-1)
    with pytest.raises(ConfigError, match="unknown option"):
        vmkit.connect("sqlite", path=db, region="eu-west-1")
    assert not db.exists(), "connect() opens no file"


def test_sizes_resolve_to_the_cheapest_that_fits(db: Path) -> None:
    provider = connect(db)
    (small,) = provider.deploy(workload("small", replicas=1))
    assert small.size == "sq.small"
    (big,) = provider.deploy(workload("big", replicas=1, resources={"cpu": 3, "memory": "8GiB"}))
    assert big.size == "sq.large"
    explicit = workload("pinned", replicas=1, options={"sqlite": {"size": "sq.xlarge"}})
    assert provider.deploy(explicit)[0].size == "sq.xlarge"
    with pytest.raises(SpecError) as info:
        provider.plan(workload("gpu", resources={"gpu": 1}))
    assert info.value.field == "resources.gpu"
    with pytest.raises(SpecError) as info:
        provider.plan(workload("typo", options={"sqlite": {"sise": "sq.small"}}))
    assert info.value.field == "options.sqlite.sise"


# ----------------------------------------------------------- shared state


def test_another_connection_and_another_process_see_the_machines(db: Path) -> None:
    deployed = connect(db).deploy(workload(labels={"team": "demo"}))
    again = connect(db).list("web")
    assert [m.id for m in again] == [m.id for m in deployed]
    listed = json.loads(cli(db, "ls", "-o", "json").stdout)
    assert [(m["id"], m["name"], m["state"]) for m in listed] == [
        (m.id, m.name, "running") for m in deployed
    ]
    assert listed[0]["labels"] == {"team": "demo"}


def test_a_create_request_sent_again_returns_the_same_machines(db: Path) -> None:
    provider = connect(db)
    plan = provider.plan(workload(replicas=2))
    (request,) = plan.requests
    assert request.body["ClientToken"]
    first = provider.apply(plan)
    # The same request again, as a retry after a lost answer would send it,
    # from this connection or from another process's.
    assert [m.id for m in provider.apply(plan)] == [m.id for m in first]
    assert [m.id for m in connect(db).apply(plan)] == [m.id for m in first]
    assert [m.id for m in provider.list("web")] == [m.id for m in first]
    # A new plan is a new deploy call: a new key.
    assert (
        provider.plan(workload(replicas=3)).requests[0].body["ClientToken"]
        != (request.body["ClientToken"])
    )


def test_two_processes_deploying_at_once_leave_a_consistent_file(db: Path, tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(WEB_YAML)
    connect(db).list()  # the file and its schema exist before the race
    command = [sys.executable, "-m", "vmkit", "deploy", str(spec), "--on", "sqlite"]
    command += ["-c", f"path={db}", "-c", "boot_delay=0.05", "-c", "poll_interval=0.02"]
    racers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for racer in racers:
        _, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(db, "PRAGMA foreign_key_check") == []
    # Both may have created the fleet; the next deploy converges to one
    # machine per replica, and one after that changes nothing.
    provider = connect(db)
    fleet = provider.deploy(vmkit.Workload.from_yaml(spec))
    assert [m.replica for m in fleet] == [0, 1, 2]
    assert [m.id for m in provider.list("web")] == [m.id for m in fleet]
    assert not provider.plan(vmkit.Workload.from_yaml(spec)).changes


# --------------------------------------------------------------- lifecycle


def test_machines_are_pending_until_the_boot_delay_has_passed(db: Path) -> None:
    provider = connect(db, boot_delay=0.8)
    started = time.monotonic()
    machines = provider.deploy(workload(), wait=False)
    assert {m.state for m in machines} == {MachineState.PENDING}
    assert "booted" not in machines[0].logs()
    # Another deploy keeps them and waits until they run.
    running = provider.deploy(workload())
    assert time.monotonic() - started >= 0.8
    assert [m.id for m in running] == [m.id for m in machines]
    assert {m.state for m in running} == {MachineState.RUNNING}
    assert "web-0 booted, running nginx:1.27" in running[0].logs()


def test_a_deploy_past_its_timeout_names_the_pending_replicas(db: Path) -> None:
    provider = connect(db, boot_delay=30)
    with pytest.raises(DeployTimeout) as info:
        provider.deploy(workload(), timeout=0.1)
    assert info.value.pending == ("web-0", "web-1")


def test_a_failed_boot_is_reported_with_the_replica_and_the_reason(db: Path) -> None:
    provider = connect(db)
    with pytest.raises(ProviderError, match=r"web-0 \(failed to boot.*fail_boot"):
        provider.deploy(workload(replicas=1, options={"sqlite": {"fail_boot": True}}))
    # The failed machine is replaced by the next deploy of a bootable spec.
    (machine,) = provider.deploy(workload(replicas=1))
    assert machine.state == MachineState.RUNNING


def test_stop_goes_through_stopping_and_keeps_the_machine(db: Path) -> None:
    provider = connect(db, boot_delay=0.3)
    (machine,) = provider.deploy(workload(replicas=1))
    assert provider.stop(machine.id, wait=False).state == MachineState.STOPPING
    assert provider.stop(machine.id).state == MachineState.STOPPED
    assert "web-0 stopped" in machine.logs()
    assert provider.start(machine.id).state == MachineState.RUNNING


def test_destroy_leaves_no_row_behind(db: Path) -> None:
    provider = connect(db)
    other = provider.deploy(workload("other", replicas=1))
    (machine, _) = provider.deploy(workload(labels={"team": "demo"}))
    machine.snapshot("before")
    provider.destroy("web", snapshots=True)
    tables = ["machines", "tags", "console", "create_requests", "workloads", "snapshots"]
    left = {t: rows(db, f"SELECT count(*) FROM {t} WHERE {_owner(t)} != 'other'") for t in tables}
    assert left == {t: [(0,)] for t in tables}
    assert [m.id for m in provider.list()] == [other[0].id]


def _owner(table: str) -> str:
    """The SQL expression naming the workload a row of ``table`` belongs to."""
    if table in ("tags", "console"):
        return "(SELECT workload FROM machines WHERE id = machine_id)"
    return "name" if table == "workloads" else "workload"


# ------------------------------------------------------------------ errors


def test_a_locked_database_is_retried_until_the_lock_is_released(db: Path) -> None:
    provider = connect(db, busy_timeout=0.05)
    (machine,) = provider.deploy(workload(replicas=1))
    with write_lock(db, release_after=0.4):
        stopped = provider.stop(machine.id)
    assert stopped.state == MachineState.STOPPED
    assert provider.api_calls["sqlite:StopMachine"] >= 2


def test_a_lock_held_past_the_retry_budget_raises_throttled(db: Path) -> None:
    provider = connect(db, busy_timeout=0.05, retry_attempts=2)
    (machine,) = provider.deploy(workload(replicas=1))
    with write_lock(db), pytest.raises(Throttled) as info:
        provider.stop(machine.id)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert provider.api_calls["sqlite:StopMachine"] == 2
    assert provider.get(machine.id).state == MachineState.RUNNING, "nothing was half-done"


def test_a_file_that_is_not_a_database_is_a_provider_error(db: Path) -> None:
    db.write_text("these are not the pages of a SQLite database\n" * 100)
    with pytest.raises(ProviderError, match="not a database") as info:
        connect(db).list()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


# --------------------------------------------------------------------- CLI


def test_the_cli_round_trip(db: Path, tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(WEB_YAML)
    deployed = json.loads(cli(db, "deploy", str(spec), "-o", "json").stdout)
    assert [(m["name"], m["state"]) for m in deployed] == [
        ("web-0", "running"),
        ("web-1", "running"),
        ("web-2", "running"),
    ]
    first = deployed[0]["id"]
    assert "stopped web-0" in cli(db, "stop", first).stdout
    assert "web-0 stopped" in cli(db, "logs", first).stdout
    snap = json.loads(cli(db, "snapshot", first, "before", "-o", "json").stdout)
    assert snap["machine_id"] == first
    # Deploying again keeps the stopped replica: nothing to do.
    again = json.loads(cli(db, "deploy", str(spec), "-o", "json").stdout)
    assert [m["id"] for m in again] == [m["id"] for m in deployed]
    out = cli(db, "destroy", "web", "--snapshots", "--yes").stdout
    assert "nothing left of web on sqlite" in out
    assert json.loads(cli(db, "ls", "-o", "json").stdout) == []
    missing = cli(db, "show", first, check=False)
    assert missing.returncode == 5
    assert "no machine" in missing.stderr
