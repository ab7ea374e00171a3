"""``vmkit snapshot``, ``vmkit snapshots``, ``vmkit restore`` and ``vmkit snapshot rm``,
driven as a user drives them.

They run against the memory cloud of test_cli.py, whose restore here also
records which snapshot a machine's boot disk now comes from, as a cloud's
disk would; and the Unsupported paths against a simulated Kubernetes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from test_cli import (
    EXAMPLE,
    Cloud,
    CloudProvider,
    PodProvider,
    as_json,
    deploy,
    error_line,
    ok,
    run,
    write_spec,
)

from vmkit import registry
from vmkit.cli import _app
from vmkit.cli._output import snapshots_table
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.testing.sim import simulated_kubernetes


class DiskProvider(CloudProvider):
    """The memory cloud, where a restore puts a disk made from the snapshot in
    place of the machine's (``boot_disk`` of its record) and starts it."""

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        record = self.machines[machine.id]
        record["boot_disk"] = f"disk-from-{snapshot.id}"
        record["state"] = MachineState.RUNNING


@pytest.fixture
def cloud() -> Cloud:
    cloud = Cloud()
    CloudProvider.cloud = cloud
    registry.register("memory", DiskProvider)
    registry.register("memory-pods", PodProvider)
    return cloud


def snap(machine_id: str, name: str) -> dict[str, Any]:
    taken: dict[str, Any] = as_json("snapshot", machine_id, name, "--on", "memory")
    return taken


def disk_of(cloud: Cloud, machine_id: str) -> str | None:
    disk: str | None = cloud.machines[machine_id].get("boot_disk")
    return disk


# ------------------------------------------------------------------ snapshot


def test_snapshot_machine_name_is_snapshot_create(cloud: Cloud) -> None:
    web0 = deploy()[0]["id"]
    short = ok("snapshot", web0, "one", "--on", "memory").stdout
    assert short.startswith("snapshot one (s-")
    assert short.endswith(f") of {web0}: available\n")
    ok("snapshot", "create", web0, "two", "--on", "memory")
    ok("snapshot", "--on", "memory", web0, "three")
    listed = as_json("snapshots", "--on", "memory")
    assert [(s["name"], s["machine_id"]) for s in listed] == [
        ("three", web0),
        ("two", web0),
        ("one", web0),
    ], "newest first"
    assert {"create", "rm"} <= set(ok("snapshot", "--help").stdout.split())


def test_snapshots_table_has_the_snapshot_columns(cloud: Cloud) -> None:
    machines = deploy()
    snap(machines[1]["id"], "before-upgrade")
    header, _, row = ok("snapshots", "--on", "memory").stdout.splitlines()[:3]
    assert header.split() == [
        "id", "name", "workload", "machine", "replica", "size", "state", "age",
    ]  # fmt: skip
    cells = row.split()
    assert cells[1:7] == ["before-upgrade", "web", machines[1]["id"], "1", "8GiB", "available"]
    record = as_json("snapshots", "--on", "memory")[0]
    assert (record["replica"], record["size"]) == (1, 8)
    assert ok("snapshots", "--on", "memory", "-w", "other").stdout == "no snapshots\n"


def test_snapshot_ids_stay_whole_unless_they_are_resource_paths() -> None:
    def table(snapshot_id: str, width: int) -> list[str]:
        record = Snapshot(
            id=snapshot_id,
            name="before-upgrade",
            provider="test",
            workload="web",
            machine_id="i-0123456789abcdef0",
            state="available",
            size=30,
            replica=0,
        )
        console = Console(width=width, file=io.StringIO(), markup=False, highlight=False)
        console.print(snapshots_table([record]))
        assert isinstance(console.file, io.StringIO)
        return console.file.getvalue().splitlines()

    short = "ami-0a1b2c3d4e5f67890"
    assert any(short in line and "i-0123456789abcdef0" in line for line in table(short, 100))
    # An Azure snapshot id (an ARM path) folds instead of pushing the other columns out.
    arm = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/snapshots/" + "x" * 80
    lines = table(arm, 120)
    assert all(len(line) <= 120 for line in lines)
    assert "before-upgrade" in lines[2]
    assert "available" in lines[2]
    assert "".join(line.split()[0] for line in lines[2:]) == arm


# ------------------------------------------------------------------- restore


def test_restore_by_name_puts_the_boot_disk_back_and_keeps_the_machine(cloud: Cloud) -> None:
    web0 = deploy()[0]
    taken = snap(web0["id"], "before-upgrade")
    ok("stop", web0["id"], "--on", "memory")
    out = ok("restore", web0["id"], "before-upgrade", "--on", "memory").stdout
    first = out.splitlines()[0]
    assert first == f"restored web-0 ({web0['id']}) from before-upgrade ({taken['id']}): running"
    assert "private ip" in out, "the machine's details follow"
    assert disk_of(cloud, web0["id"]) == f"disk-from-{taken['id']}"
    restored = as_json("restore", web0["id"], taken["id"], "--on", "memory")
    for kept in ("id", "name", "replica", "labels", "workload"):
        assert restored[kept] == web0[kept], kept
    assert restored["state"] == "running"


def test_restore_by_name_prefers_the_machines_own_snapshot(cloud: Cloud) -> None:
    web0, web1, _ = (m["id"] for m in deploy())
    snap(web0, "before-upgrade")
    of_web1 = snap(web1, "before-upgrade")
    ok("restore", web1, "before-upgrade", "--on", "memory")
    assert disk_of(cloud, web1) == f"disk-from-{of_web1['id']}"


def test_restore_by_name_finds_the_replicas_snapshot_after_a_replacement(cloud: Cloud) -> None:
    web0, web1, _ = (m["id"] for m in deploy())
    of_web0 = snap(web0, "nightly")
    snap(web1, "nightly")
    ok("rm", web0, "--on", "memory")
    new_web0 = deploy()[0]["id"]
    assert new_web0 != web0
    ok("restore", new_web0, "nightly", "--on", "memory")
    assert disk_of(cloud, new_web0) == f"disk-from-{of_web0['id']}"
    own = snap(new_web0, "nightly")
    ok("restore", new_web0, "nightly", "--on", "memory")
    assert disk_of(cloud, new_web0) == f"disk-from-{own['id']}", "its own before its replica's"


def test_an_ambiguous_name_lists_the_candidates_and_restores_nothing(cloud: Cloud) -> None:
    web0 = deploy()[0]["id"]
    first, second = snap(web0, "daily"), snap(web0, "daily")
    result = run("restore", web0, "daily", "--on", "memory")
    assert result.exit_code == 2
    assert "2 snapshots are named 'daily'" in result.stderr
    assert first["id"] in result.stderr
    assert second["id"] in result.stderr
    assert disk_of(cloud, web0) is None
    ok("restore", web0, first["id"], "--on", "memory")
    assert disk_of(cloud, web0) == f"disk-from-{first['id']}"


def test_a_name_counts_only_in_the_machines_workload_an_id_anywhere(
    cloud: Cloud, tmp_path: Path
) -> None:
    web0 = deploy()[0]["id"]
    api0 = deploy(spec=write_spec(tmp_path, "name: api\nreplicas: 1\n"))[0]["id"]
    of_api = snap(api0, "golden")
    result = run("restore", web0, "golden", "--on", "memory")
    assert result.exit_code == 5
    assert (
        error_line(result)
        == "error: no snapshot golden of web on memory (mem-1) (it has no snapshots)"
    )
    snap(web0, "old")
    result = run("restore", web0, "golden", "--on", "memory")
    assert error_line(result).endswith("(its snapshots: old)")
    ok("restore", web0, of_api["id"], "--on", "memory")
    assert disk_of(cloud, web0) == f"disk-from-{of_api['id']}"


def test_restore_of_an_unknown_machine_exits_5(cloud: Cloud) -> None:
    deploy()
    result = run("restore", "m-404", "anything", "--on", "memory")
    assert result.exit_code == 5
    assert "m-404" in error_line(result)


def test_restore_asks_first_on_a_terminal(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    web0 = deploy()[0]["id"]
    taken = snap(web0, "before-upgrade")
    monkeypatch.setattr(_app, "_interactive", lambda: True)
    refused = run("restore", web0, "before-upgrade", "--on", "memory", input="n\n")
    assert refused.exit_code == 1
    assert f"Restore web-0 ({web0}) on memory (mem-1) to snapshot before-upgrade" in refused.stderr
    assert "Its current boot disk is deleted." in refused.stderr
    assert disk_of(cloud, web0) is None
    assert run("restore", web0, "before-upgrade", "--on", "memory", input="y\n").exit_code == 0
    assert disk_of(cloud, web0) == f"disk-from-{taken['id']}"
    cloud.machines[web0].pop("boot_disk")
    ok("restore", web0, "before-upgrade", "--on", "memory", "--yes")
    assert disk_of(cloud, web0) == f"disk-from-{taken['id']}"


# ---------------------------------------------------------------- snapshot rm


def test_snapshot_rm_deletes_by_id_or_name_and_is_idempotent(cloud: Cloud) -> None:
    web0, web1, _ = (m["id"] for m in deploy())
    one, two = snap(web0, "one"), snap(web1, "two")
    out = ok("snapshot", "rm", one["id"], "--on", "memory").stdout
    assert out == f"deleted snapshot one ({one['id']})\n"
    assert set(cloud.snaps) == {two["id"]}
    again = ok("snapshot", "rm", one["id"], "--on", "memory").stdout
    assert again == f"no snapshot {one['id']} on memory (mem-1): nothing to delete\n"
    assert ok("snapshot", "rm", "two", "--on", "memory").stdout.startswith("deleted snapshot two")
    assert cloud.snaps == {}


def test_options_may_come_before_the_subcommand(cloud: Cloud) -> None:
    # As before the group existed, options go anywhere on the line: before
    # "rm" or "create" they are the subcommand's, not a machine called "rm".
    web0 = deploy()[0]["id"]
    one = snap(web0, "one")
    out = ok("snapshot", "--on", "memory", "rm", "one", "-y").stdout
    assert out == f"deleted snapshot one ({one['id']})\n"
    assert cloud.snaps == {}
    made = ok("snapshot", "--on=memory", "-o", "json", "create", web0, "two").stdout
    assert json.loads(made)["name"] == "two"
    ok("snapshot", "-o", "json", "--on", "memory", web0, "three")
    assert sorted(s["name"] for s in as_json("snapshots", "--on", "memory")) == ["three", "two"]
    # A machine id after the options is still the short form of create.
    assert ok("snapshot", "--on", "memory", web0, "four").stdout.startswith("snapshot four")


def test_snapshot_rm_refuses_an_ambiguous_name(cloud: Cloud, tmp_path: Path) -> None:
    web0 = deploy()[0]["id"]
    api0 = deploy(spec=write_spec(tmp_path, "name: api\nreplicas: 1\n"))[0]["id"]
    snap(web0, "golden")
    snap(api0, "golden")
    result = run("snapshot", "rm", "golden", "--on", "memory")
    assert result.exit_code == 2
    assert "2 snapshots are named 'golden'" in result.stderr
    assert len(cloud.snaps) == 2


def test_snapshot_rm_asks_first_on_a_terminal(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    web0 = deploy()[0]["id"]
    taken = snap(web0, "before-upgrade")
    monkeypatch.setattr(_app, "_interactive", lambda: True)
    refused = run("snapshot", "rm", "before-upgrade", "--on", "memory", input="n\n")
    assert refused.exit_code == 1
    question = f"Delete snapshot before-upgrade ({taken['id']}) of web replica 0 on memory (mem-1)?"
    assert question in refused.stderr
    assert taken["id"] in cloud.snaps
    assert run("snapshot", "rm", "before-upgrade", "--on", "memory", input="y\n").exit_code == 0
    assert cloud.snaps == {}
    snap(web0, "again")
    ok("snapshot", "rm", "again", "--on", "memory", "-y")
    assert cloud.snaps == {}


# ----------------------------------------------------------------- unsupported


@pytest.mark.parametrize(
    "args",
    [
        ("snapshots",),
        ("restore", "m-1", "before"),
        ("snapshot", "rm", "before"),
        ("snapshot", "m-1", "before"),
    ],
)
def test_snapshots_on_a_provider_without_them_exit_5(cloud: Cloud, args: tuple[str, ...]) -> None:
    deploy()
    result = run(*args, "--on", "memory-pods")
    assert (result.exit_code, error_line(result)) == (5, "error: memory does not support snapshot")


def test_destroy_with_snapshots_on_a_provider_without_them(cloud: Cloud) -> None:
    as_json("deploy", str(EXAMPLE), "--on", "memory-pods")
    out = ok("destroy", "web", "--on", "memory-pods", "--snapshots", "--yes").stdout
    assert out.splitlines()[-1] == "nothing left of web on memory"
    assert cloud.machines == {}


def test_kubernetes_says_snapshots_are_unsupported() -> None:
    with simulated_kubernetes() as config:
        on = ["--on", "kubernetes", "--endpoint", config["host"], "-c", f"token={config['token']}"]
        for args in (["snapshots"], ["snapshot", "rm", "x"], ["restore", "pod", "x"]):
            result = run(*args, *on)
            assert result.exit_code == 5, args
            line = error_line(result)
            assert line.startswith("error: kubernetes pods have no disk to snapshot"), line
            assert "VM provider (aws, gcp, azure)" in line, line
