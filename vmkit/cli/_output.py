"""What the CLI shows: fleet tables, machine details, plans, snapshots, JSON.

Everything here builds rich renderables or JSON text; the commands decide
where they go. Cell text is wrapped in ``Text`` so a machine named
``[web]`` is shown as is, never read as rich markup.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import Plan
from vmkit.spec import format_size

if TYPE_CHECKING:
    from vmkit._fleet import Fleet

__all__ = [
    "ProviderStatus",
    "detail_table",
    "dump_json",
    "fleet_table",
    "fleet_view",
    "format_age",
    "make_console",
    "orphans_table",
    "plan_view",
    "providers_table",
    "snapshots_table",
    "state_text",
    "targets_table",
    "watch_fleet",
]

#: Columns a user copies into the next command: shown whole whatever the width.
_WHOLE = frozenset({"target", "name", "id", "state", "machine"})

#: Wide enough for a fleet table in a CI log, where there is no terminal to ask.
_PIPE_WIDTH = 200

_STATE_STYLE = {
    MachineState.RUNNING: "green",
    MachineState.PENDING: "yellow",
    MachineState.STOPPING: "yellow",
    MachineState.STOPPED: "dim",
    MachineState.DELETING: "magenta",
    MachineState.DELETED: "dim",
    MachineState.FAILED: "bold red",
    MachineState.UNKNOWN: "red",
}


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that never reads markup in data.

    When the stream is not a terminal (a pipe, a CI log) and ``COLUMNS`` is
    unset, tables get a wide page instead of rich's 80 columns, so ids and
    addresses are not folded.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = _PIPE_WIDTH
    return Console(stderr=stderr, width=width, highlight=False, markup=False, emoji=False)


def dump_json(data: Any) -> str:
    """``data`` as indented JSON; datetimes and other objects become strings."""
    return json.dumps(data, indent=2, default=str)


def state_text(state: MachineState) -> Text:
    """A machine state, coloured by how healthy it is."""
    return Text(state.value, style=_STATE_STYLE.get(state, ""))


def format_age(created_at: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``created_at`` was, in one unit: ``42s``, ``5m``, ``3h``, ``2d``."""
    if created_at is None:
        return "-"
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - created_at).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cell(value: object) -> Text:
    return Text("-" if value is None or value == "" else str(value))


def _table(
    columns: Sequence[str], rows: Iterable[Sequence[Text]], whole: frozenset[str] = _WHOLE
) -> Table:
    """A table whose identifying columns (``whole``) are never shortened: on a
    narrow terminal the other columns fold instead."""
    rows = list(rows)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for index, column in enumerate(columns):
        if column in whole:
            width = max([len(column), *(row[index].cell_len for row in rows)])
            table.add_column(column, no_wrap=True, min_width=width)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


_FLEET_COLUMNS = (
    "provider", "location", "workload", "name", "id", "kind", "state", "size",
    "private ip", "public ip", "age",
)  # fmt: skip


def _machine_row(m: Machine, now: datetime | None) -> list[Text]:
    return [
        _cell(m.provider),
        _cell(m.location),
        _cell(m.workload),
        _cell(m.name),
        _cell(m.id),
        _cell(m.kind),
        state_text(m.state),
        _cell(m.size),
        _cell(m.private_ip),
        _cell(m.public_ip),
        _cell(format_age(m.created_at, now)),
    ]


def fleet_table(
    machines: Iterable[Machine],
    *,
    target_of: Callable[[Machine], str] | None = None,
    now: datetime | None = None,
) -> Table:
    """The fleet: one row per machine.

    Columns: provider, location, workload, name, id, kind, state, size,
    private and public IP, age; ``target_of`` adds a leading "target"
    column (the demo runs one workload on several simulated clouds).
    """
    columns = list(_FLEET_COLUMNS)
    if target_of is not None:
        columns.insert(0, "target")
    rows = []
    for m in machines:
        row = _machine_row(m, now)
        if target_of is not None:
            row.insert(0, _cell(target_of(m)))
        rows.append(row)
    return _table(columns, rows)


def targets_table(view: Fleet, *, now: datetime | None = None) -> Table:
    """The fleet across targets: a "target" column, then the columns of
    :func:`fleet_table`, target by target. A target that did not answer is
    one row: its target and provider, its one-line error where the location
    goes, and "error" as its state."""
    rows: list[list[Text]] = []
    for target in view.targets:
        if target in view.errors:
            record = view.error_dict(target)
            row = [Text("")] * (len(_FLEET_COLUMNS) + 1)
            row[0], row[1] = _cell(target), _cell(record["provider"])
            row[2] = Text(record["error"], style="red")
            row[1 + _FLEET_COLUMNS.index("state")] = Text("error", style="bold red")
            rows.append(row)
            continue
        for entry in view.machines:
            if entry.target == target:
                rows.append([_cell(target), *_machine_row(entry.machine, now)])
    return _table(["target", *_FLEET_COLUMNS], rows)


def fleet_view(view: Fleet) -> RenderableType:
    """The fleet across targets, or a line saying there is nothing in it."""
    if view.machines or view.errors:
        return targets_table(view)
    return Text("no managed machines")


def watch_fleet(
    first: Callable[[], Fleet], console: Console, *, interval: float, count: int | None
) -> int:
    """Show ``first()`` and then its :meth:`Fleet.refresh` every ``interval``
    seconds (the targets are connected once) until Ctrl-C or ``count``
    refreshes: in place on a terminal, printed again each time elsewhere.
    Returns the exit status of the last refresh (5 when a target failed)."""
    status, shown = 0, 0
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    view: Fleet | None = None
    try:
        with live if live is not None else contextlib.nullcontext():
            while True:
                view = first() if view is None else view.refresh()
                status = 0 if view.ok else 5
                if live is not None:
                    live.update(fleet_view(view), refresh=True)
                else:
                    console.print(fleet_view(view))
                shown += 1
                if count is not None and shown >= count:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return status


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def detail_table(machine: Machine) -> Table:
    """One machine, field by field."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    created = machine.created_at.isoformat() if machine.created_at else None
    age = format_age(machine.created_at)
    rows: list[tuple[str, RenderableType]] = [
        ("id", _cell(machine.id)),
        ("name", _cell(machine.name)),
        ("provider", _cell(machine.provider)),
        ("kind", _cell(machine.kind)),
        ("workload", _cell(machine.workload)),
        ("replica", _cell(machine.replica)),
        ("state", state_text(machine.state)),
        ("size", _cell(machine.size)),
        ("image", _cell(machine.image)),
        ("location", _cell(machine.location)),
        ("private ip", _cell(machine.private_ip)),
        ("public ip", _cell(machine.public_ip)),
        ("labels", _cell(_labels(machine.labels))),
        ("created", _cell(f"{created} ({age} ago)" if created else None)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def plan_view(plan: Plan, location: str) -> Group:
    """The actions (replica, action, machine, reason), then each create
    request as YAML, exactly as deploy would send it."""
    counts = {kind: len(plan.of(kind)) for kind in ("create", "keep", "replace", "delete")}
    summary = ", ".join(f"{n} to {kind}" for kind, n in counts.items())
    header = Text(f"plan for {plan.workload.name} on {plan.provider} ({location}): {summary}")
    actions = _table(
        ("replica", "action", "machine", "reason"),
        (
            (
                _cell(action.replica if action.replica >= 0 else "?"),
                Text(action.kind, style="bold" if action.kind != "keep" else ""),
                _cell(action.machine.id if action.machine else None),
                _cell(action.reason),
            )
            for action in plan.actions
        ),
    )
    parts: list[RenderableType] = [header, actions]
    for number, request in enumerate(plan.requests, start=1):
        replicas = ", ".join(str(r) for r in request.replicas)
        parts.append(Text(f"request {number}: {request.operation} (replicas {replicas})"))
        # Round-trip through JSON so SDK-specific values become plain YAML.
        body = json.loads(json.dumps(request.body, default=str))
        parts.append(Text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True).rstrip()))
    if not plan.changes:
        parts.append(Text("nothing to change"))
    return Group(*parts)


#: Snapshot ids longer than this fold in the table rather than push the other columns out.
_FOLDED_ID = 40


def snapshots_table(snapshots: Sequence[Snapshot], *, now: datetime | None = None) -> Table:
    """Snapshots, newest first as the provider returns them: id, name,
    workload, machine (the id of the machine it copies), replica, size (of
    the copied disk), state and age; "-" where the cloud does not say.

    Ids are shown whole, to be copied, unless one is longer than
    ``_FOLDED_ID`` characters (an Azure snapshot id is an ARM path of some
    150): the id and machine columns then fold to leave the id room, and
    ``vmkit restore`` takes the name.
    """
    columns = ("id", "name", "workload", "machine", "replica", "size", "state", "age")
    rows = [
        (
            _cell(s.id),
            _cell(s.name),
            _cell(s.workload),
            _cell(s.machine_id),
            _cell(s.replica),
            _cell(format_size(s.size * 2**30) if s.size is not None else None),
            _cell(s.state),
            _cell(format_age(s.created_at, now)),
        )
        for s in snapshots
    ]
    whole = {"name", "state"}
    if all(len(s.id) <= _FOLDED_ID for s in snapshots):
        whole |= {"id", "machine"}
    return _table(columns, rows, whole=frozenset(whole))


def orphans_table(records: Sequence[Mapping[str, Any]]) -> Table:
    """What ``vmkit gc`` found, target by target: one row per orphaned resource
    (target, provider, workload, kind, name, action: "deleted" or "would
    delete", reason, id), and one row per target that failed, with "error" as
    the action and its one-line error as the reason. ``records`` are those of
    ``vmkit gc -o json``. The id comes last and may fold: a cloud's resource
    ids can be long (Azure's are paths of 150 characters)."""
    rows = []
    for record in records:
        if "error" in record:
            rows.append(
                [_cell(record["target"]), _cell(record["provider"])]
                + [Text("")] * 3
                + [Text("error", style="bold red"), Text(record["error"], style="red"), Text("")]
            )
            continue
        action = Text("deleted", style="magenta") if record["deleted"] else Text("would delete")
        rows.append(
            [
                _cell(record["target"]),
                _cell(record["provider"]),
                _cell(record["workload"]),
                _cell(record["kind"]),
                _cell(record["name"]),
                action,
                _cell(record["reason"]),
                _cell(record["id"]),
            ]
        )
    columns = ("target", "provider", "workload", "kind", "name", "action", "reason", "id")
    return _table(columns, rows, whole=frozenset({"target", "name", "action"}))


ProviderStatus = dict[str, Any]


def providers_table(statuses: Sequence[ProviderStatus]) -> Table:
    """Installed backends: whether each loads and whether credentials resolve."""
    rows = []
    for status in statuses:
        loads = Text("yes", style="green") if status["loads"] else Text("no", style="red")
        if not status["loads"]:
            credentials = Text("-")
        elif status["credentials_ok"]:
            credentials = Text("found", style="green")
        else:
            credentials = Text("missing", style="yellow")
        note = status["error"] or status["credentials"] or ""
        rows.append((_cell(status["name"]), loads, credentials, Text(note)))
    return _table(("provider", "loads", "credentials", "note"), rows)
