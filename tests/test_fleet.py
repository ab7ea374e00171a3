"""vmkit.fleet() and ``vmkit ls`` across every target of the targets file."""

from __future__ import annotations

import itertools
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner, Result
from memory_provider import MemoryProvider

import vmkit
from vmkit import registry
from vmkit.cli import cli
from vmkit.errors import AuthError
from vmkit.machine import Machine
from vmkit.spec import Workload

ROW_FIELDS = {
    "target", "id", "name", "provider", "kind", "workload", "replica", "state", "size", "image",
    "location", "private_ip", "public_ip", "labels", "created_at",
}  # fmt: skip


class ZoneProvider(MemoryProvider):
    """A memory backend whose machines live in a zone shared by every
    connect() (as a cloud's do), that can be slow or refuse credentials."""

    name = "zonemem"
    zones: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    ids: ClassVar[Iterator[int]] = itertools.count(1)

    def __init__(
        self,
        *,
        zone: str = "z1",
        delay: float = 0.0,
        refuse: bool = False,
        poll_interval: float = 0.0,
        timeout: float = 10.0,
    ) -> None:
        if refuse:
            raise AuthError("no credentials for zonemem", provider=self.name)
        super().__init__(poll_interval=poll_interval, timeout=timeout)
        self.zone = zone
        self.delay = delay
        self.machines = self.zones.setdefault(zone, {})
        # Ids unique across connects, as a cloud's are.
        self._ids = self.ids

    @property
    def location(self) -> str:
        return self.zone

    def _list(self, workload: str | None) -> list[Machine]:
        time.sleep(self.delay)
        return super()._list(workload)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("VMKIT_CONFIG", raising=False)
    monkeypatch.delenv("VMKIT_PROVIDER", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    registry.register("zonemem", ZoneProvider)
    ZoneProvider.zones = {}
    return work


def targets(isolated: Path, text: str) -> Path:
    path = isolated / "vmkit.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": None}, catch_exceptions=False)


def as_json(*args: str, code: int = 0) -> Any:
    result = run(*args, "-o", "json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def deploy(target: str, name: str, replicas: int = 1, **labels: str) -> None:
    # No delay while deploying: kwargs override the target's options.
    workload = Workload(name=name, replicas=replicas, labels=labels)
    vmkit.connect(target, delay=0.0).deploy(workload)


@pytest.fixture
def three(isolated: Path) -> None:
    """Three answering targets (a, b, c) and one without credentials (locked)."""
    targets(
        isolated,
        """
        a: {provider: zonemem, zone: za}
        b: {provider: zonemem, zone: zb}
        locked: {provider: zonemem, zone: zl, refuse: true}
        c: {provider: zonemem, zone: zc}
        """,
    )
    deploy("a", "web", 2, team="blue", tier="front")
    deploy("b", "web", 1, team="red", tier="front")
    deploy("b", "db", 1, team="blue", tier="back")


# --------------------------------------------------------------- concurrency


def test_targets_are_listed_at_once(isolated: Path) -> None:
    lines = [f"t{i}: {{provider: zonemem, zone: z{i}, delay: 0.3}}" for i in range(4)]
    targets(isolated, "\n".join(lines) + "\n")
    for i in range(4):
        deploy(f"t{i}", "web")
    started = time.monotonic()
    view = vmkit.fleet()
    assert time.monotonic() - started < 0.8, "four 0.3 s listings must overlap"
    assert view.ok
    assert [(e.target, e.machine.location) for e in view.machines] == [
        (f"t{i}", f"z{i}") for i in range(4)
    ]
    started = time.monotonic()
    records = as_json("ls")
    assert time.monotonic() - started < 0.8
    assert [r["target"] for r in records] == ["t0", "t1", "t2", "t3"]


def test_a_silent_target_is_an_error_after_the_timeout(isolated: Path) -> None:
    targets(isolated, "fast: {provider: zonemem}\nslow: {provider: zonemem, delay: 3}\n")
    started = time.monotonic()
    view = vmkit.fleet(timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert set(view.errors) == {"slow"}
    assert "no answer within 0.3s" in str(view.errors["slow"])


# -------------------------------------------------------------- refreshing


class CountedProvider(ZoneProvider):
    """A zonemem whose connects are counted by zone, and whose zones in
    ``locked`` refuse credentials until they are unlocked."""

    name = "counted"
    connects: ClassVar[dict[str, int]] = {}
    locked: ClassVar[set[str]] = set()

    def __init__(self, *, zone: str = "z1", delay: float = 0.0) -> None:
        self.connects[zone] = self.connects.get(zone, 0) + 1
        super().__init__(zone=zone, delay=delay, refuse=zone in self.locked)


@pytest.fixture
def counted(isolated: Path) -> type[CountedProvider]:
    registry.register("counted", CountedProvider)
    CountedProvider.connects, CountedProvider.locked = {}, set()
    lines = [f"t{i}: {{provider: counted, zone: z{i}, delay: 0.05}}" for i in range(3)]
    targets(isolated, "\n".join(lines) + "\n")
    return CountedProvider


def test_a_refreshed_view_lists_again_without_connecting_again(
    counted: type[CountedProvider],
) -> None:
    deploy("t0", "web")
    view = vmkit.fleet(workload="web")
    assert [(e.target, e.machine.name) for e in view.machines] == [("t0", "web-0")]
    deploy("t1", "web")
    deploy("t2", "db")
    counted.connects.clear()
    for _ in range(3):
        view = view.refresh()
    assert counted.connects == {}, "the view's providers are reused"
    # A fresh listing each time, with the view's filters.
    assert [(e.target, e.machine.name) for e in view.machines] == [
        ("t0", "web-0"), ("t1", "web-0"),
    ]  # fmt: skip
    assert view.targets == ("t0", "t1", "t2")
    vmkit.fleet()
    assert counted.connects == {"z0": 1, "z1": 1, "z2": 1}, "a new view connects anew"


def test_a_target_that_failed_to_connect_is_connected_on_the_next_refresh(
    counted: type[CountedProvider],
) -> None:
    counted.locked = {"z1"}
    view = vmkit.fleet()
    assert list(view.errors) == ["t1"]
    assert isinstance(view.errors["t1"], vmkit.AuthError)
    counted.locked = set()  # the credentials appear
    deploy("t1", "web")
    counted.connects.clear()
    view = view.refresh()
    assert view.ok
    assert [(e.target, e.machine.name) for e in view.machines] == [("t1", "web-0")]
    assert counted.connects == {"z1": 1}


def test_refreshes_of_one_view_at_once_connect_a_target_once(
    counted: type[CountedProvider],
) -> None:
    counted.locked = {"z1"}
    view = vmkit.fleet()
    counted.locked = set()
    counted.connects.clear()
    refreshed: list[vmkit.Fleet] = []
    threads = [threading.Thread(target=lambda: refreshed.append(view.refresh())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [v.ok for v in refreshed] == [True] * 4
    assert counted.connects == {"z1": 1}


def test_a_view_built_by_hand_has_nothing_to_refresh() -> None:
    with pytest.raises(vmkit.ConfigError, match="nothing to refresh"):
        vmkit.Fleet(targets=("a",)).refresh()


# ------------------------------------------------------------------ failures


def test_a_failing_target_is_one_error_row_and_the_others_list(three: None) -> None:
    result = run("ls")
    assert result.exit_code == 5
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:7] == ["target", "provider", "location", "workload", "name", "id", "kind"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows[:4]] == [
        ("a", "za", "web", "web-0"), ("a", "za", "web", "web-1"),
        ("b", "zb", "db", "db-0"), ("b", "zb", "web", "web-0"),
    ]  # fmt: skip
    errors = [line for line in lines if line.startswith("locked")]
    assert len(errors) == 1
    assert errors[0].split()[:2] == ["locked", "zonemem"]
    assert "no credentials for zonemem" in errors[0]
    assert "error" in errors[0].split()
    assert len(rows) == 5, "c has no machines and no row"
    assert result.stderr == ""


def test_json_lists_machines_with_their_target_and_one_record_per_failure(three: None) -> None:
    records = as_json("ls", code=5)
    machines = [r for r in records if "error" not in r]
    assert all(set(r) == ROW_FIELDS for r in machines)
    assert [(r["target"], r["name"]) for r in machines] == [
        ("a", "web-0"), ("a", "web-1"), ("b", "db-0"), ("b", "web-0"),
    ]  # fmt: skip
    assert [r for r in records if "error" in r] == [
        {
            "target": "locked",
            "provider": "zonemem",
            "error": "no credentials for zonemem",
            "error_type": "AuthError",
        }
    ]
    view = vmkit.fleet()
    assert view.to_records() == records
    assert view.to_dict() == {
        "machines": machines,
        "errors": [r for r in records if "error" in r],
    }
    assert isinstance(view.errors["locked"], vmkit.AuthError)


def test_an_unexpected_exception_is_that_targets_error(isolated: Path) -> None:
    class Buggy(ZoneProvider):
        def _list(self, workload: str | None) -> list[Machine]:
            raise KeyError("boom")

    registry.register("buggy", Buggy)
    targets(isolated, "good: {provider: zonemem}\nbad: {provider: buggy}\n")
    view = vmkit.fleet()
    assert list(view.errors) == ["bad"]
    assert isinstance(view.errors["bad"], vmkit.ProviderError)
    assert str(view.errors["bad"]) == "unexpected KeyError: 'boom'"


def test_without_targets_file_or_on_ls_says_how_to_write_one(isolated: Path) -> None:
    result = run("ls")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: no targets file: write a vmkit.yaml")
    assert "--on PROVIDER" in result.stderr
    with pytest.raises(vmkit.ConfigError, match="no targets file"):
        vmkit.fleet()
    assert run("ls", "--region", "eu-1").exit_code == 2, "--region needs --on"


# ------------------------------------------------------------------- filters


def test_workload_and_label_filters(three: None) -> None:
    def names(*args: str) -> list[tuple[str, str]]:
        return [(r["target"], r["name"]) for r in as_json("ls", *args, code=5) if "name" in r]

    assert names("-w", "db") == [("b", "db-0")]
    assert names("--label", "team=blue") == [("a", "web-0"), ("a", "web-1"), ("b", "db-0")]
    assert names("-l", "team=blue", "-l", "tier=front") == [("a", "web-0"), ("a", "web-1")]
    assert names("-l", "team=green") == []
    view = vmkit.fleet(targets=["a", "b"], labels={"tier": "front"}, workload="web")
    assert view.ok
    assert [(e.target, e.machine.name) for e in view.machines] == [
        ("a", "web-0"), ("a", "web-1"), ("b", "web-0"),
    ]  # fmt: skip
    assert run("ls", "-l", "novalue").exit_code == 2


def test_on_still_lists_one_target_and_takes_the_label_filter(three: None) -> None:
    assert [r["name"] for r in as_json("ls", "--on", "b", "-l", "team=red")] == ["web-0"]
    result = run("ls", "--on", "locked")
    assert (result.exit_code, result.stderr) == (5, "error: no credentials for zonemem\n")


# --------------------------------------------------------------------- watch


def test_watch_on_a_pipe_prints_the_table_each_refresh(three: None) -> None:
    result = run("ls", "--watch", "--interval", "0.05", "--count", "2")
    assert result.exit_code == 5, "the last refresh had a failed target"
    headers = [
        line for line in result.stdout.splitlines() if line.split()[:2] == ["target", "provider"]
    ]
    assert len(headers) == 2
    assert result.stdout.count("web-1") == 2
    assert run("ls", "--watch", "-o", "json").exit_code == 2


def test_watch_with_on_and_no_failure_exits_0(three: None) -> None:
    result = run("ls", "--on", "a", "--watch", "--interval", "0", "--count", "3")
    assert result.exit_code == 0
    assert result.stdout.count("web-0") == 3


def test_watch_connects_each_target_once(three: None, monkeypatch: pytest.MonkeyPatch) -> None:
    connects: list[str] = []
    original = ZoneProvider.__init__

    def counting(self: ZoneProvider, **options: Any) -> None:
        connects.append(options.get("zone", "z1"))
        original(self, **options)

    monkeypatch.setattr(ZoneProvider, "__init__", counting)
    result = run("ls", "--watch", "--interval", "0", "--count", "3")
    assert result.stdout.count("web-1") == 3
    answering = [zone for zone in connects if zone != "zl"]
    assert sorted(answering) == ["za", "zb", "zc"], "a refresh reconnected a target"
    assert connects.count("zl") == 3, "a target that failed to connect is tried again"


# ---------------------------------------------------------- simulated clouds


def test_simulated_aws_and_kubernetes_in_one_targets_file(isolated: Path, tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    pytest.importorskip("kubernetes")
    from vmkit.testing.sim import simulated_aws, simulated_kubernetes

    with simulated_aws() as aws, simulated_kubernetes() as k8s:
        # The token goes in a kubeconfig, the SDK's own chain, never in vmkit.yaml.
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "sim", "cluster": {"server": k8s["host"]}}],
                    "users": [{"name": "sim", "user": {"token": k8s["token"]}}],
                    "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim"}}],
                    "current-context": "sim",
                }
            )
        )
        targets(
            isolated,
            f"""
            cloud: {{provider: aws, region: {aws["region"]}, poll_interval: 0.05}}
            cluster: {{provider: kubernetes, kubeconfig: {kubeconfig}, poll_interval: 0.05}}
            """,
        )
        spec = Workload(name="web", image="nginx:1.27", replicas=1)
        vmkit.connect("cloud").deploy(spec)
        vmkit.connect("cluster").deploy(spec)
        records = as_json("ls")
        assert [(r["target"], r["provider"], r["kind"], r["name"]) for r in records] == [
            ("cloud", "aws", "vm", "web-0"),
            ("cluster", "kubernetes", "container", "web-0"),
        ]
        table = run("ls").stdout
        assert "cloud " in table
        assert "cluster " in table
