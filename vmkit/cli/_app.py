"""The ``vmkit`` command group: error handling, provider options, the commands."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

import vmkit
from vmkit._fleet import Fleet, gather
from vmkit.cli._output import (
    ProviderStatus,
    detail_table,
    dump_json,
    fleet_table,
    fleet_view,
    make_console,
    plan_view,
    providers_table,
    watch_fleet,
)
from vmkit.cli._progress import deploy_with_progress
from vmkit.errors import (
    ConfigError,
    DeployTimeout,
    NotFound,
    ProviderError,
    SpecError,
    VmkitError,
)
from vmkit.machine import Machine
from vmkit.provider import Provider
from vmkit.registry import accepted_options, available, connect, load
from vmkit.spec import Workload
from vmkit.targets import find_target

__all__ = ["EXIT_CODES", "cli", "exit_code", "main"]

#: Exit status by error class, most specific first (documented in docs/cli.md).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (DeployTimeout, 6),
    (ProviderError, 5),
    (ConfigError, 4),
    (SpecError, 3),
)
EXIT_UNEXPECTED = 1

#: CLI shorthand -> the backend's option name, first one the backend accepts.
_SHORTHANDS: dict[str, tuple[str, ...]] = {
    "region": ("region", "location"),
    "profile": ("profile",),
    "endpoint": ("endpoint_url", "endpoint", "host"),
}

_OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: machine-readable records on stdout, nothing else.",
)


def exit_code(exc: BaseException) -> int:
    """The exit status for an error (1 for anything unexpected)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_UNEXPECTED


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _Group(click.Group):
    """Turns every error into one ``error: ...`` line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                traceback.print_exception(exc, file=sys.stderr)
            if isinstance(exc, VmkitError):
                message = _one_line(exc)
            else:
                message = f"unexpected {type(exc).__name__}: {_one_line(exc)}"
                if not ctx.params.get("debug"):
                    message += " (run with --debug for the traceback)"
            click.echo(f"error: {message}", err=True)
            raise click.exceptions.Exit(exit_code(exc)) from exc


@dataclass
class _Target:
    """What ``--on`` names (a target of the targets file, or a provider), and
    the connect() options given on the command line."""

    name: str
    shorthands: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def provider(self) -> str:
        """The backend name: the target's provider, or ``name`` itself."""
        target = find_target(self.name)
        return target.provider if target is not None else self.name

    def options(self) -> dict[str, Any]:
        """connect() keyword arguments given here (a target's own options
        come from the file, below these): shorthands mapped to the backend's
        option names, then ``-c`` pairs (which win)."""
        options: dict[str, Any] = {}
        if self.shorthands:
            provider = self.provider()
            accepted = accepted_options(load(provider))
            for shorthand, value in self.shorthands.items():
                options[_option_name(provider, shorthand, accepted)] = value
        options.update(self.config)
        return options

    def connect(self) -> Provider:
        return connect(self.name, **self.options())


def _option_name(provider: str, shorthand: str, accepted: set[str] | None) -> str:
    candidates = _SHORTHANDS[shorthand]
    for candidate in candidates:
        if accepted is None or candidate in accepted:
            return candidate
    raise ConfigError(f"{provider}: --{shorthand} is not an option of this provider")


def _parse_config(
    ctx: click.Context, param: click.Parameter, pairs: Sequence[str]
) -> dict[str, Any]:
    """``key=value`` pairs; values are YAML scalars (``0.5`` a float, ``true`` a bool)."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", ctx=ctx, param=param)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if not isinstance(value, str | int | float | bool | None):
            value = text
        config[key.strip()] = value
    return config


def _provider_options(*, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--on`` and the provider options; the command gets ``target``
    (None when ``--on`` is optional and not given)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(
            *args: Any,
            on: str | None,
            region: str | None,
            profile: str | None,
            endpoint: str | None,
            config: dict[str, Any],
            **kwargs: Any,
        ) -> Any:
            given = {"region": region, "profile": profile, "endpoint": endpoint}
            shorthands = {k: v for k, v in given.items() if v is not None}
            if on is None:
                if shorthands or config:
                    raise click.UsageError("--region, --profile, --endpoint and -c need --on")
                return command(*args, target=None, **kwargs)
            return command(*args, target=_Target(on, shorthands, config), **kwargs)

        return _add_provider_options(wrapper, required=required)

    return decorate


def _add_provider_options(wrapper: Callable[..., Any], *, required: bool) -> Callable[..., Any]:
    every = "" if required else " Without it: every target of the targets file."
    options = [
        click.option(
            "--on",
            "on",
            required=required,
            envvar="VMKIT_PROVIDER",
            metavar="TARGET",
            help="A target of the targets file (vmkit.yaml), or a provider (aws, gcp, azure, "
            f"kubernetes...). Env: VMKIT_PROVIDER.{every}",
        ),
        click.option("--region", help="Region (aws: region)."),
        click.option("--profile", help="Credentials profile (aws: profile)."),
        click.option("--endpoint", help="API endpoint override (aws: endpoint_url)."),
        click.option(
            "-c",
            "--config",
            multiple=True,
            callback=_parse_config,
            metavar="KEY=VALUE",
            help="Any provider option, repeatable; values parsed as YAML scalars.",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


_with_provider = _provider_options(required=True)


def _stdout() -> Console:
    return make_console()


def _stderr() -> Console:
    return make_console(stderr=True)


def _print_json(data: Any) -> None:
    click.echo(dump_json(data))


def _interactive() -> bool:
    """True when a person can answer a prompt."""
    return sys.stdin.isatty()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vmkit.__version__, prog_name="vmkit")
@click.option(
    "--debug",
    is_flag=True,
    envvar="VMKIT_DEBUG",
    help="Show tracebacks and vmkit's debug log on stderr. Env: VMKIT_DEBUG=1.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Provision compute on any cloud from one Workload spec.

    Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 invalid spec,
    4 configuration (unknown provider, missing extra, bad option),
    5 provider error, 6 deploy timeout.
    """
    if debug:
        # vmkit's loggers only: SDK debug logs print request headers.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logger = logging.getLogger("vmkit")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)

        def restore() -> None:
            logger.removeHandler(handler)
            logger.setLevel(level)

        ctx.call_on_close(restore)


# ------------------------------------------------------------------ deploying


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_with_provider
@click.option("--no-wait", is_flag=True, help="Return once the create requests are sent.")
@click.option("--timeout", type=float, help="Seconds to wait for running replicas.")
@click.option("--atomic", is_flag=True, help="On failure, delete every machine this run made.")
@_OUTPUT
def deploy(
    file: Path, target: _Target, no_wait: bool, timeout: float | None, atomic: bool, output: str
) -> None:
    """Converge the provider to the workload in FILE and wait until it runs.

    Idempotent: deploying the same spec again changes nothing. When replicas
    fail, the others stay and the failed ones are deleted (all of this run's
    with --atomic).
    """
    workload = Workload.from_yaml(file)
    provider = target.connect()
    machines = deploy_with_progress(
        provider, workload, console=_stderr(), timeout=timeout, wait=not no_wait, atomic=atomic
    )
    _show_fleet(machines, output, empty=f"{workload.name} has no replicas")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_with_provider
@_OUTPUT
def plan(file: Path, target: _Target, output: str) -> None:
    """Show what deploy would do with FILE, without changing anything."""
    workload = Workload.from_yaml(file)
    provider = target.connect()
    result = provider.plan(workload)
    if output == "json":
        _print_json(result.to_dict())
    else:
        _stdout().print(plan_view(result, provider.location))


# ------------------------------------------------------------------- machines


def _show_fleet(machines: Sequence[Machine], output: str, *, empty: str) -> None:
    if output == "json":
        _print_json([m.to_dict() for m in machines])
    elif machines:
        _stdout().print(fleet_table(machines))
    else:
        click.echo(empty)


def _parse_labels(
    ctx: click.Context, param: click.Parameter, pairs: Sequence[str]
) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", ctx=ctx, param=param)
        labels[key.strip()] = value.strip()
    return labels


def _has_labels(machine: Machine, labels: dict[str, str]) -> bool:
    return all(machine.labels.get(key) == value for key, value in labels.items())


def _fleet_view(target: _Target | None, workload: str | None, labels: dict[str, str]) -> Fleet:
    """Every target of the targets file, or the one ``--on`` names, listed at once."""
    if target is not None:
        return gather(
            {target.name: (target.provider(), target.connect)}, workload=workload, labels=labels
        )
    return vmkit.fleet(workload=workload, labels=labels)


@cli.command("ls")
@_provider_options(required=False)
@click.option("-w", "--workload", help="Only this workload's machines.")
@click.option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    callback=_parse_labels,
    metavar="KEY=VALUE",
    help="Only machines with this label; repeatable, all must match.",
)
@click.option("--watch", is_flag=True, help="Refresh the table until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.0),
    default=5.0,
    show_default=True,
    help="Seconds between two refreshes with --watch.",
)
@click.option(
    "--count", type=click.IntRange(min=1), help="With --watch: stop after this many refreshes."
)
@_OUTPUT
def list_machines(
    target: _Target | None,
    workload: str | None,
    labels: dict[str, str],
    watch: bool,
    interval: float,
    count: int | None,
    output: str,
) -> None:
    """List the machines vmkit manages, on one target or provider (--on) or
    on every target of the targets file at once.

    Across targets, a target that fails is one error row and the others are
    listed; the exit status is then 5.
    """
    if watch:
        if output == "json":
            raise click.UsageError("--watch shows a table; use -o json without --watch")
        refresh = functools.partial(_fleet_view, target, workload, labels)
        status = watch_fleet(refresh, _stdout(), interval=interval, count=count)
        raise click.exceptions.Exit(status)
    if target is not None:
        machines = [m for m in target.connect().list(workload) if _has_labels(m, labels)]
        _show_fleet(machines, output, empty="no managed machines")
        return
    view = _fleet_view(None, workload, labels)
    if output == "json":
        _print_json(view.to_records())
    else:
        _stdout().print(fleet_view(view))
    if not view.ok:
        raise click.exceptions.Exit(5)


@cli.command()
@click.argument("machine_id", metavar="ID")
@_with_provider
@_OUTPUT
def show(machine_id: str, target: _Target, output: str) -> None:
    """Show one machine."""
    machine = target.connect().get(machine_id)
    if output == "json":
        _print_json(machine.to_dict())
    else:
        _stdout().print(detail_table(machine))


def _transition(verb: str, past: str, doc: str) -> click.Command:
    """A command that runs ``Provider.<verb>`` on one machine and shows its state."""

    @click.argument("machine_id", metavar="ID")
    @_with_provider
    def command(machine_id: str, target: _Target) -> None:
        machine = getattr(target.connect(), verb)(machine_id)
        click.echo(f"{past} {machine.name} ({machine.id}): {machine.state.value}")

    command.__doc__ = doc
    return cli.command(verb)(command)


start = _transition("start", "started", "Start a stopped machine and wait until it runs.")
stop = _transition("stop", "stopped", "Stop a machine (its disk is kept) and wait until stopped.")
reboot = _transition("reboot", "rebooted", "Reboot a machine and wait until it runs again.")


@cli.command("rm")
@click.argument("machine_id", metavar="ID")
@_with_provider
@click.option("--ignore-not-found", is_flag=True, help="A machine already gone is not an error.")
def remove(machine_id: str, target: _Target, ignore_not_found: bool) -> None:
    """Delete one machine and what it alone owns; waits until it is gone.

    The next deploy of its workload creates the replica again.
    """
    provider = target.connect()
    try:
        machine = provider.get(machine_id)
    except NotFound:
        if not ignore_not_found:
            raise
        click.echo(f"{machine_id} is already gone")
        return
    provider.delete(machine.id)
    click.echo(f"deleted {machine.name} ({machine.id})")


@cli.command()
@click.argument("machine_id", metavar="ID")
@_with_provider
def logs(machine_id: str, target: _Target) -> None:
    """Print the console output (VM) or container log (pod) of a machine."""
    click.echo(target.connect().logs(machine_id), nl=False)


@cli.command()
@click.argument("workload")
@_with_provider
@click.option("--snapshots", "with_snapshots", is_flag=True, help="Delete its snapshots too.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy(workload: str, target: _Target, with_snapshots: bool, yes: bool) -> None:
    """Delete every machine and resource WORKLOAD owns (snapshots with --snapshots).

    Asks for confirmation when run from a terminal, unless --yes.
    """
    provider = target.connect()
    machines = provider.list(workload)
    # A provider without snapshots has none to delete: destroy skips them there.
    with_snapshots = with_snapshots and "snapshot" in provider.capabilities
    doomed_snapshots = provider.snapshots(workload) if with_snapshots else []
    if not yes and _interactive():
        what = f"{len(machines)} machine(s)"
        if with_snapshots:
            what += f" and {len(doomed_snapshots)} snapshot(s)"
        where = f"{provider.name} ({provider.location})"
        click.confirm(f"Destroy {workload}: {what} on {where}?", abort=True, err=True)
    removed = provider.destroy(workload, snapshots=with_snapshots)
    for machine in removed:
        click.echo(f"deleted {machine.name} ({machine.id})")
    if with_snapshots:
        click.echo(f"deleted {len(doomed_snapshots)} snapshot(s)")
    click.echo(f"nothing left of {workload} on {provider.name}")


# ----------------------------------------------------------------- reference


def _provider_status(name: str) -> ProviderStatus:
    status: ProviderStatus = {
        "name": name,
        "loads": False,
        "error": None,
        "credentials_ok": False,
        "credentials": None,
    }
    # A diagnostic: one broken backend must not hide the others.
    try:
        cls = load(name)
    except ConfigError as exc:
        status["error"] = _one_line(exc)
        return status
    except Exception as exc:
        status["error"] = f"fails to load: {type(exc).__name__}: {_one_line(exc)}"
        return status
    status["loads"] = True
    try:
        reason = cls.credentials_status()
    except Exception as exc:
        reason = f"cannot tell: {type(exc).__name__}: {_one_line(exc)}"
    status["credentials_ok"] = reason is None
    status["credentials"] = reason
    return status


@cli.command()
@_OUTPUT
def providers(output: str) -> None:
    """List the installed providers: whether each loads, whether credentials resolve."""
    statuses = [_provider_status(name) for name in available()]
    if output == "json":
        _print_json(statuses)
    else:
        _stdout().print(providers_table(statuses))


@cli.command()
def schema() -> None:
    """Print the Workload JSON schema, for editors that validate spec files."""
    _print_json(Workload.model_json_schema())


@cli.command()
@click.argument("file", default="examples/web.yaml", type=click.Path(path_type=Path))
def demo(file: Path) -> None:
    """Run FILE's workload through its life on simulated clouds (no account needed).

    Deploys it, stops and starts a machine, snapshots it and rolls it back
    to the snapshot, then destroys everything, snapshots included. FILE
    defaults to examples/web.yaml.
    """
    from vmkit.cli._demo import run_demo

    if not file.is_file():
        raise click.UsageError(
            f"no spec file at {file} (from {Path.cwd()}): run vmkit demo from the vmkit "
            "repository, or give a workload file: vmkit demo FILE"
        )
    run_demo(file, console=_stdout(), progress=_stderr())


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run the CLI; exits with its status."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="vmkit")
