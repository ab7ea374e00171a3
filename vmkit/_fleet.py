"""One read-only view of the machines on every target, listed concurrently.

::

    view = vmkit.fleet(workload="web")
    for entry in view.machines:
        print(entry.target, entry.machine.name, entry.machine.state)
    for target, error in view.errors.items():
        print(target, "failed:", error)
    view = view.refresh()   # again, through the same connections

The module is private so that ``vmkit.fleet`` stays the function: importing a
submodule called ``vmkit.fleet`` would rebind that package attribute to it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmkit.errors import ConfigError, ProviderError, VmkitError
from vmkit.machine import Machine
from vmkit.provider import Provider

__all__ = ["Fleet", "FleetEntry", "fleet", "gather"]

#: A target to list: its provider name and how to connect to it.
Connector = tuple[str, Callable[[], Provider]]


class _Connections:
    """The providers of a view's targets, each connected on first use and then
    kept: connecting builds SDK clients (tens of milliseconds of CPU for some),
    which a view that is listed again must not pay twice. A target whose
    connect failed is connected again next time (its credentials may have
    appeared since); one whose listing failed keeps its provider."""

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self.connectors = dict(connectors)
        self._providers: dict[str, Provider] = {}
        # One lock per target: two listings of the same view at once connect it once.
        self._locks = {name: threading.Lock() for name in self.connectors}

    def provider(self, target: str) -> Provider:
        """The provider of ``target``, connecting it if it is not yet."""
        with self._locks[target]:
            provider = self._providers.get(target)
            if provider is None:
                provider = self.connectors[target][1]()
                self._providers[target] = provider
            return provider


@dataclass(frozen=True)
class _Query:
    """How a view was listed, so that it can be listed again."""

    connections: _Connections
    workload: str | None
    labels: Mapping[str, str]
    timeout: float | None


@dataclass(frozen=True)
class FleetEntry:
    """One machine, and the target it was listed on."""

    target: str
    machine: Machine

    def to_dict(self) -> dict[str, Any]:
        """``{"target": ..., **Machine.to_dict()}``."""
        return {"target": self.target, **self.machine.to_dict()}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@dataclass(frozen=True)
class Fleet:
    """What every target answered.

    ``targets`` are the names asked, in order; ``machines`` the machines of
    the targets that answered, target by target; ``errors`` why each other
    target did not answer; ``providers`` the provider name of each target.
    """

    targets: tuple[str, ...]
    machines: tuple[FleetEntry, ...] = ()
    errors: Mapping[str, VmkitError] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)
    _query: _Query | None = field(default=None, repr=False, compare=False, kw_only=True)

    @property
    def ok(self) -> bool:
        """True when every target answered."""
        return not self.errors

    def refresh(self) -> Fleet:
        """The same targets listed again, with the same filters and timeout,
        through the providers this view connected: each target is connected
        once for the lifetime of a view and of the views refreshed from it
        (a target that failed to connect is tried again). The targets file is
        not read again; call :func:`fleet` for that.

        Raises ConfigError for a view that was not listed by :func:`fleet`
        (one built by hand has nothing to list).
        """
        if self._query is None:
            raise ConfigError("this Fleet was not listed by vmkit.fleet(): nothing to refresh")
        return _list(self._query)

    def error_dict(self, target: str) -> dict[str, Any]:
        """The JSON record of a failed target: target, provider, error (one
        line) and error_type (the VmkitError class name)."""
        error = self.errors[target]
        return {
            "target": target,
            "provider": self.providers.get(target),
            "error": _one_line(error),
            "error_type": type(error).__name__,
        }

    def to_dict(self) -> dict[str, Any]:
        """``{"machines": [FleetEntry.to_dict()...], "errors": [error_dict()...]}``."""
        return {
            "machines": [entry.to_dict() for entry in self.machines],
            "errors": [self.error_dict(target) for target in self.targets if target in self.errors],
        }

    def to_records(self) -> list[dict[str, Any]]:
        """One flat list, target by target: each machine's record, or the
        target's error record (the one with an ``"error"`` key). This is what
        ``vmkit ls -o json`` prints."""
        records: list[dict[str, Any]] = []
        for target in self.targets:
            if target in self.errors:
                records.append(self.error_dict(target))
            else:
                records.extend(e.to_dict() for e in self.machines if e.target == target)
        return records


def _matches(machine: Machine, labels: Mapping[str, str]) -> bool:
    return all(machine.labels.get(key) == value for key, value in labels.items())


def gather(
    connectors: Mapping[str, Connector],
    *,
    workload: str | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Fleet:
    """List every target at once, a thread each; see :func:`fleet`.

    ``connectors`` maps a target name to its provider name and a function
    that connects to it (called in the target's thread, once for the lifetime
    of the view: see :meth:`Fleet.refresh`).
    """
    return _list(_Query(_Connections(connectors), workload, dict(labels or {}), timeout))


def _list(query: _Query) -> Fleet:
    connectors, timeout = query.connections.connectors, query.timeout
    answers: dict[str, list[Machine]] = {}
    failures: dict[str, BaseException] = {}

    def work(target: str) -> None:
        try:
            found = query.connections.provider(target).list(query.workload)
        except Exception as exc:  # a target's failure is its row, never the others'
            failures[target] = exc
            return
        answers[target] = [m for m in found if _matches(m, query.labels)]

    threads = [
        threading.Thread(target=work, args=(name,), name=f"vmkit-ls-{name}", daemon=True)
        for name in connectors
    ]
    for thread in threads:
        thread.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    providers = {name: provider for name, (provider, _) in connectors.items()}
    # Read once: a thread still running past the deadline cannot change the result.
    answered = dict(answers)
    failed = dict(failures)
    machines: list[FleetEntry] = []
    errors: dict[str, VmkitError] = {}
    for name in connectors:
        if name in answered:
            machines.extend(FleetEntry(name, m) for m in answered[name])
        elif name in failed:
            errors[name] = _as_vmkit_error(failed[name], providers[name])
        else:
            errors[name] = ProviderError(
                f"no answer within {timeout:g}s", provider=providers[name], operation="list"
            )
    return Fleet(tuple(connectors), tuple(machines), errors, providers, _query=query)


def _as_vmkit_error(exc: BaseException, provider: str) -> VmkitError:
    if isinstance(exc, VmkitError):
        return exc
    error = ProviderError(
        f"unexpected {type(exc).__name__}: {_one_line(exc)}", provider=provider, operation="list"
    )
    error.__cause__ = exc
    return error


def fleet(
    *,
    targets: Iterable[str] | None = None,
    workload: str | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Fleet:
    """The managed machines of every target in the targets file (or of
    ``targets``: target or provider names), optionally of one ``workload``
    and carrying every one of ``labels``.

    Guarantees: read-only (one ``list`` per target, nothing changed);
    concurrent (a thread per target, so it takes about as long as the slowest
    target); never raises for a target that fails — connecting or listing,
    missing extra, no credentials, unreachable — its error is in
    ``Fleet.errors`` and the other targets are listed. ``timeout`` (seconds)
    bounds the whole call: a target still silent then is an error. Each call
    connects to every target; to list the same targets again without
    connecting again (a dashboard, ``vmkit ls --watch``), call
    :meth:`Fleet.refresh` on the view it returned.

    Raises ConfigError only when there is nothing to list: no targets file
    (and no ``targets``), an invalid targets file, or a file without targets.
    """
    from vmkit.registry import connect
    from vmkit.targets import HOW_TO, load_targets

    file = load_targets()
    if targets is None:
        if file.path is None:
            raise ConfigError(f"no targets file: {HOW_TO}")
        if not len(file):
            raise ConfigError(f"{file.path} names no targets")
        names: Sequence[str] = file.names()
    else:
        names = list(dict.fromkeys(targets))

    def connector(name: str) -> Connector:
        target = file.get(name)
        return (target.provider if target else name, lambda: connect(name))

    return gather(
        {name: connector(name) for name in names},
        workload=workload,
        labels=labels,
        timeout=timeout,
    )
