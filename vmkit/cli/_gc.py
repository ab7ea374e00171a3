"""``vmkit gc``: find and delete what vmkit tagged that no machine owns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import click

from vmkit.cli import _app
from vmkit.cli._output import orphans_table
from vmkit.errors import ConfigError, ProviderError, VmkitError
from vmkit.machine import Orphan
from vmkit.provider import Provider

__all__ = ["gc"]

#: Target name -> (provider name, how to connect to it).
_Connectors = Mapping[str, tuple[str, Callable[[], Provider]]]


@dataclass
class _Sweep:
    """What ``gc`` did on each target: its orphans, or why it failed."""

    dry_run: bool
    providers: dict[str, str]
    found: dict[str, list[Orphan]] = field(default_factory=dict)
    errors: dict[str, VmkitError] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(orphans) for orphans in self.found.values())

    def records(self) -> list[dict[str, Any]]:
        """Target by target: each orphan's record with ``target`` and
        ``deleted``, or the target's ``{"target", "provider", "error",
        "error_type"}`` record. What ``-o json`` prints."""
        records: list[dict[str, Any]] = []
        for target in self.providers:
            if target in self.errors:
                error = self.errors[target]
                records.append(
                    {
                        "target": target,
                        "provider": self.providers[target],
                        "error": _app._one_line(error),
                        "error_type": type(error).__name__,
                    }
                )
                continue
            for orphan in self.found.get(target, []):
                records.append({"target": target, **orphan.to_dict(), "deleted": not self.dry_run})
        return records


def _as_vmkit_error(exc: Exception, provider: str) -> VmkitError:
    if isinstance(exc, VmkitError):
        return exc
    error = ProviderError(
        f"unexpected {type(exc).__name__}: {_app._one_line(exc)}", provider=provider, operation="gc"
    )
    error.__cause__ = exc
    return error


def _sweep(
    connectors: _Connectors,
    workload: str | None,
    *,
    dry_run: bool,
    isolate: bool,
    confirmed: _Sweep | None = None,
) -> _Sweep:
    """``Provider.gc`` on every target at once. With ``isolate`` a target's
    failure is its own (in ``errors``); without, it is raised. With
    ``confirmed`` (the preview the user agreed to) only what it listed is
    deleted, never something found since."""
    sweep = _Sweep(dry_run, {name: provider for name, (provider, _) in connectors.items()})

    def gc(name: str, connect: Callable[[], Provider]) -> list[Orphan]:
        only = confirmed.found.get(name, []) if confirmed is not None else None
        return connect().gc(workload, dry_run=dry_run, only=only)

    if not isolate:
        for name, (_, connect) in connectors.items():
            sweep.found[name] = gc(name, connect)
        return sweep

    def one(name: str) -> None:
        provider_name, connect = connectors[name]
        try:
            sweep.found[name] = gc(name, connect)
        except Exception as exc:  # one target's failure is its row, never the others'
            sweep.errors[name] = _as_vmkit_error(exc, provider_name)

    with ThreadPoolExecutor(max_workers=max(1, len(connectors))) as pool:
        list(pool.map(one, connectors))
    return sweep


def _every_target() -> _Connectors:
    from vmkit.registry import connect
    from vmkit.targets import HOW_TO, load_targets

    targets = load_targets()
    if targets.path is None:
        raise ConfigError(f"no targets file: {HOW_TO}")
    if not len(targets):
        raise ConfigError(f"{targets.path} names no targets")

    def connector(name: str) -> Callable[[], Provider]:
        return lambda: connect(name)

    return {target.name: (target.provider, connector(target.name)) for target in targets}


def _show(sweep: _Sweep, output: str) -> None:
    if output == "json":
        _app._print_json(sweep.records())
        return
    if sweep.count or sweep.errors:
        _app._stdout().print(orphans_table(sweep.records()))
    if not sweep.count:
        click.echo("no orphaned resources")
    elif sweep.dry_run:
        click.echo(f"{sweep.count} orphaned resource(s) would be deleted (dry run)")
    else:
        click.echo(f"deleted {sweep.count} orphaned resource(s)")


@click.command()
@_app._provider_options(required=False)
@click.option("-w", "--workload", help="Only this workload's resources.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_app._OUTPUT
def gc(
    target: _app._Target | None, workload: str | None, dry_run: bool, yes: bool, output: str
) -> None:
    """Delete the resources vmkit tagged that no live machine owns.

    Security groups, firewall rules, key pairs, NICs, addresses and disks
    that a crashed or interrupted run left behind; snapshots never count.
    On one target or provider (--on), or on every target of the targets file
    at once, where a target that fails is one error row (exit status 5).
    From a terminal it lists what it found and asks first, unless --yes.
    """
    if target is not None:
        connectors: _Connectors = {target.name: (target.provider(), target.connect)}
    else:
        connectors = _every_target()
    # On one target its error is the command's, with that error's exit status.
    isolate = target is None
    preview = None
    if not dry_run and not yes and _app._interactive():
        preview = _sweep(connectors, workload, dry_run=True, isolate=isolate)
        _show(preview, "table")
        if preview.errors:
            raise click.exceptions.Exit(5)
        if not preview.count:
            return
        click.confirm(f"Delete these {preview.count} resource(s)?", abort=True, err=True)
    sweep = _sweep(connectors, workload, dry_run=dry_run, isolate=isolate, confirmed=preview)
    _show(sweep, output)
    if sweep.errors:
        raise click.exceptions.Exit(5)
