"""``vmkit snapshot`` (create, rm), ``vmkit snapshots`` and ``vmkit restore``.

A snapshot is named on the command line by its id or by its name: ids are
long (an Azure one is an ARM path), and a user types the name they gave.
:func:`find_snapshot` says which names are unambiguous.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

from vmkit.cli import _app
from vmkit.cli._output import detail_table, format_age, snapshots_table
from vmkit.errors import NotFound
from vmkit.machine import Machine, Snapshot
from vmkit.provider import Provider

__all__ = ["find_snapshot", "restore", "snapshot", "snapshots"]

#: How many of a workload's snapshot names a "no such snapshot" error lists.
_NAMES_SHOWN = 5


def _describe(snap: Snapshot) -> str:
    """One candidate of an ambiguous name: enough to tell it from the others."""
    replica = f", replica {snap.replica}" if snap.replica is not None else ""
    machine = snap.machine_id or "-"
    return f"{snap.id} (machine {machine}{replica}, {format_age(snap.created_at)} old)"


def find_snapshot(
    found: Sequence[Snapshot], reference: str, machine: Machine | None = None
) -> Snapshot | None:
    """The snapshot of ``found`` that ``reference`` names, or None.

    An id matches first, whatever its workload. Otherwise ``reference`` is a
    name: with ``machine``, only its workload's snapshots count, and among
    several of that name the machine's own win, then its replica's (a
    machine a redeploy replaced has a new id but the same replica). Several
    left is ambiguous: :class:`click.BadParameter` lists them, so the user
    can give an id.
    """
    for snap in found:
        if snap.id == reference:
            return snap
    named = [s for s in found if s.name == reference]
    if machine is not None:
        named = [s for s in named if s.workload == machine.workload]
        narrower: tuple[Callable[[Snapshot], bool], ...] = (
            lambda s: s.machine_id == machine.id,
            lambda s: machine.replica is not None and s.replica == machine.replica,
        )
        for keep in narrower:
            own = [s for s in named if keep(s)]
            if own:
                named = own
                break
    if len(named) > 1:
        candidates = "; ".join(_describe(s) for s in named)
        raise click.BadParameter(
            f"{len(named)} snapshots are named {reference!r}: {candidates}. Give the id.",
            param_hint="'SNAPSHOT'",
        )
    return named[0] if named else None


class _SnapshotGroup(click.Group):
    """A group whose first argument, when it names no subcommand, is the
    ``create`` subcommand's: ``vmkit snapshot MACHINE NAME`` (the command's
    first form, documented and scripted) keeps working. Options may come
    before the subcommand's name, as they could before the group existed
    (``vmkit snapshot --on aws rm NAME``): they are the subcommand's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Shell completion parses partial lines: leave them to click.
        if args and not ctx.resilient_parsing and args[0] not in ctx.help_option_names:
            at = self._first_argument(args)
            if at is not None and args[at] in self.commands:
                args = [args[at], *args[:at], *args[at + 1 :]]
            else:
                args = ["create", *args]
        return super().parse_args(ctx, args)

    def _first_argument(self, args: list[str]) -> int | None:
        """Where the first argument that is not an option (nor an option's
        value) is in ``args``; None when there is none."""
        valued = {
            name
            for command in self.commands.values()
            for param in command.params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in param.opts
        }
        at = 0
        while at < len(args):
            token = args[at]
            if token == "--":
                return at + 1 if at + 1 < len(args) else None
            if not token.startswith("-") or token == "-":
                return at
            # "--on aws" takes the next token; "--on=aws", "-oaws" and flags do not.
            at += 2 if token in valued else 1
        return None


@click.group(cls=_SnapshotGroup, subcommand_metavar="MACHINE NAME | COMMAND [ARGS]...")
def snapshot() -> None:
    """Snapshot a machine's boot disk, or delete a snapshot.

    vmkit snapshot MACHINE NAME is short for vmkit snapshot create MACHINE NAME.
    """


@snapshot.command("create", short_help="Snapshot a machine's boot disk as NAME.")
@click.argument("machine_id", metavar="MACHINE")
@click.argument("name")
@_app._with_provider
@_app._OUTPUT
def create(machine_id: str, name: str, target: _app._Target, output: str) -> None:
    """Snapshot the boot disk of MACHINE (an id) as NAME, tagged with its workload.

    Snapshots are backups: destroy keeps them unless --snapshots, gc never
    deletes them.
    """
    snap = target.connect().snapshot(machine_id, name)
    if output == "json":
        _app._print_json(snap.to_dict())
    else:
        click.echo(f"snapshot {snap.name} ({snap.id}) of {machine_id}: {snap.state}")


def _where(provider: Provider) -> str:
    return f"{provider.name} ({provider.location})"


@snapshot.command("rm", short_help="Delete a snapshot, by id or name.")
@click.argument("reference", metavar="SNAPSHOT")
@_app._with_provider
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(reference: str, target: _app._Target, yes: bool) -> None:
    """Delete the snapshot SNAPSHOT (an id, or a name only one snapshot has).

    Idempotent: a snapshot that is not there is not an error. Only snapshots
    vmkit made are deleted. Asks first when run from a terminal, unless --yes.
    """
    provider = target.connect()
    snap = find_snapshot(provider.snapshots(), reference)
    if snap is None:
        click.echo(f"no snapshot {reference} on {_where(provider)}: nothing to delete")
        return
    if not yes and _app._interactive():
        of = snap.workload + (f" replica {snap.replica}" if snap.replica is not None else "")
        click.confirm(
            f"Delete snapshot {snap.name} ({snap.id}) of {of} on {_where(provider)}?",
            abort=True,
            err=True,
        )
    snap.delete()
    click.echo(f"deleted snapshot {snap.name} ({snap.id})")


@click.command()
@_app._with_provider
@click.option("-w", "--workload", help="Only this workload's snapshots.")
@_app._OUTPUT
def snapshots(target: _app._Target, workload: str | None, output: str) -> None:
    """List the snapshots vmkit made, newest first.

    A provider without snapshots (Kubernetes) fails with its reason (status 5).
    """
    found = target.connect().snapshots(workload)
    if output == "json":
        _app._print_json([s.to_dict() for s in found])
    elif found:
        _app._stdout().print(snapshots_table(found))
    else:
        click.echo("no snapshots")


def _missing(reference: str, machine: Machine, found: Sequence[Snapshot], where: str) -> NotFound:
    names = sorted({s.name for s in found if s.workload == machine.workload})
    shown = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
    has = f"its snapshots: {shown}" if names else "it has no snapshots"
    return NotFound(
        f"no snapshot {reference} of {machine.workload} on {where} ({has})",
        provider=machine.provider,
    )


@click.command()
@click.argument("machine_id", metavar="MACHINE")
@click.argument("reference", metavar="SNAPSHOT")
@_app._with_provider
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_app._OUTPUT
def restore(machine_id: str, reference: str, target: _app._Target, yes: bool, output: str) -> None:
    """Put the boot disk of MACHINE (an id) back to SNAPSHOT and start it again.

    SNAPSHOT is an id, or a name of one of the machine's workload's
    snapshots (the machine's own first). The machine keeps its id, name,
    replica, tags and, where the cloud allows, its private IP; its current
    boot disk is deleted. Asks first when run from a terminal, unless --yes.
    """
    provider = target.connect()
    # Listed first: a provider without snapshots says so before anything else.
    found = provider.snapshots()
    machine = provider.get(machine_id)
    snap = find_snapshot(found, reference, machine)
    if snap is None:
        raise _missing(reference, machine, found, _where(provider))
    if not yes and _app._interactive():
        click.confirm(
            f"Restore {machine.name} ({machine.id}) on {_where(provider)} to snapshot "
            f"{snap.name} ({snap.id}, {format_age(snap.created_at)} old)? "
            "Its current boot disk is deleted.",
            abort=True,
            err=True,
        )
    restored = machine.restore(snap)
    if output == "json":
        _app._print_json(restored.to_dict())
        return
    click.echo(
        f"restored {restored.name} ({restored.id}) from {snap.name} ({snap.id}): "
        f"{restored.state.value}"
    )
    _app._stdout().print(detail_table(restored))
