"""Deploy with progress: each replica's state, shown while deploy waits.

``Provider.deploy`` calls its ``progress`` callback after each poll round;
the CLI draws a live table on a terminal and plain lines elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vmkit.cli._output import state_text
from vmkit.machine import Machine, MachineState
from vmkit.provider import Provider
from vmkit.spec import Workload

__all__ = ["deploy_with_progress"]


class _Display(Protocol):
    def show(self, machines: Sequence[Machine]) -> None: ...


class _PlainLines:
    """For pipes and CI logs: one line each time a replica changes state."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last: dict[str, MachineState] = {}

    def show(self, machines: Sequence[Machine]) -> None:
        for m in machines:
            if self.last.get(m.id) != m.state:
                self.last[m.id] = m.state
                self.console.print(Text(f"{m.name} {m.id} {m.state.value}"))


class _LiveTable:
    """For terminals: a table redrawn in place, one line per replica."""

    def __init__(self, live: Live, title: str) -> None:
        self.live = live
        self.title = title
        self.started = time.monotonic()

    def show(self, machines: Sequence[Machine]) -> None:
        elapsed = int(time.monotonic() - self.started)
        table = Table(title=f"{self.title} ({elapsed}s)", title_justify="left", box=None)
        for column in ("replica", "name", "id", "state"):
            table.add_column(column, no_wrap=True)
        for m in machines:
            replica = "-" if m.replica is None else str(m.replica)
            table.add_row(Text(replica), Text(m.name), Text(m.id), state_text(m.state))
        self.live.update(table)


@contextmanager
def _display(console: Console, title: str) -> Iterator[_Display]:
    if console.is_terminal:
        with Live(console=console, transient=True, refresh_per_second=8) as live:
            yield _LiveTable(live, title)
    else:
        yield _PlainLines(console)


def deploy_with_progress(
    provider: Provider,
    workload: Workload,
    *,
    console: Console,
    timeout: float | None = None,
    wait: bool = True,
    atomic: bool = False,
) -> list[Machine]:
    """Converge ``provider`` to ``workload``; with ``wait``, show each replica's
    state on ``console`` until all are running (or stopped by the user).

    Returns the machines by replica. Raises what ``Provider.deploy`` raises,
    and DeployTimeout naming the replicas still pending after ``timeout``
    seconds (the provider's ``timeout`` when None), counted from the start.
    ``atomic`` as in ``Provider.deploy``.
    """
    if not wait:
        return provider.deploy(workload, wait=False, timeout=timeout, atomic=atomic)
    title = f"deploying {workload.name} on {provider.name} ({provider.location})"
    with _display(console, title) as display:
        return provider.deploy(workload, timeout=timeout, progress=display.show, atomic=atomic)
