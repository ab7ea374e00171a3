"""Finding and connecting backends.

Backends are found through the entry-point group ``vmkit.providers``; the
built-in ones are registered there by vmkit's own pyproject exactly as a third
party's would be. Loading is lazy: a backend's module (and its SDK) is
imported when it is first connected.

The entry points are read once per process: reading them opens the metadata of
every installed distribution (3 to 5 ms with 130 of them installed, holding the
interpreter lock), and a fleet listing connects to every target at once. They are read again when
``sys.path`` changes, when a name is not among them (a plugin installed while
the process runs), and by :func:`rescan`.
"""

from __future__ import annotations

import inspect
import sys
import threading
from typing import TYPE_CHECKING, Any

from vmkit.errors import ConfigError
from vmkit.provider import Provider

if TYPE_CHECKING:
    from importlib import metadata

__all__ = [
    "ENTRY_POINT_GROUP",
    "accepted_options",
    "available",
    "connect",
    "load",
    "register",
    "rescan",
]

ENTRY_POINT_GROUP = "vmkit.providers"
_registered: dict[str, type[Provider]] = {}

# The last scan: the sys.path it was made with, and the entry points it found.
_scan: tuple[tuple[str, ...], dict[str, metadata.EntryPoint]] | None = None
# One scan at a time: the threads of a fleet listing that connect together wait
# for the first one's scan instead of each making its own.
_scan_lock = threading.Lock()


def _entry_points(*, fresh: bool = False) -> dict[str, metadata.EntryPoint]:
    """The ``vmkit.providers`` entry points by name, from the last scan unless
    ``fresh`` or ``sys.path`` changed since (the scan reads the distributions
    found on ``sys.path``). The caller must not change the mapping."""
    global _scan
    # Imported here: importlib.metadata costs 15 to 25 ms to import (it pulls in
    # the email package), which a command that connects nothing, such as
    # `vmkit --help` (the CLI imports this module), should not pay.
    from importlib import metadata

    path = tuple(sys.path)
    with _scan_lock:
        if fresh or _scan is None or _scan[0] != path:
            found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
            _scan = (path, found)
        return _scan[1]


def _entry_point(name: str) -> metadata.EntryPoint | None:
    """The entry point called ``name``, scanning again when the last scan did
    not have it: a plugin may have been installed since."""
    ep = _entry_points().get(name)
    return ep if ep is not None else _entry_points(fresh=True).get(name)


def rescan() -> list[str]:
    """Read the installed backends again, and return :func:`available`.

    Connecting to a name that is not known already reads them again, so this
    is needed only for :func:`available` to list a plugin installed while the
    process runs.
    """
    _entry_points(fresh=True)
    return available()


def available() -> list[str]:
    """Names of every backend that can be connected (installed or registered)."""
    return sorted(set(_entry_points()) | set(_registered))


def register(name: str, cls: type[Provider]) -> None:
    """Register a backend class in-process (tests, notebooks). Entry points are
    the way to ship one."""
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"{cls!r} is not a vmkit.Provider subclass")
    _registered[name] = cls


def _install_hint(name: str, ep: metadata.EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else None
    if dist is None or dist.lower() == "vmkit":
        return f'pip install "vmkit[{name}]"'
    return f'pip install --upgrade "{dist}"'


def load(name: str) -> type[Provider]:
    """The backend class called ``name``. Raises ConfigError with what to do
    when the name is unknown or the backend's SDK is not installed."""
    if name in _registered:
        return _registered[name]
    ep = _entry_point(name)
    if ep is None:
        known = ", ".join(available()) or "none"
        raise ConfigError(f"unknown provider {name!r}; installed providers: {known}")
    try:
        cls = ep.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise ConfigError(
            f"the {name} provider needs {missing}, which is not installed: "
            f"{_install_hint(name, ep)}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"entry point {name} = {ep.value} is not a vmkit.Provider subclass")
    return cls


def connect(name: str, **config: Any) -> Provider:
    """Connect to a backend: ``connect("aws", region="eu-west-1")``, or to a
    target of the targets file: ``connect("prod-aws")``.

    ``config`` is the backend's own options (see its docs page) plus the
    shared ones: ``retry_attempts``, ``retry_timeout`` (seconds),
    ``poll_interval`` and ``timeout``. For a target, its options from the
    file come first and ``config`` overrides them; a name that is both a
    target and a provider is the target. An unknown option raises
    ConfigError listing the accepted ones; an unknown name lists the
    providers and the targets. No API call is made.
    """
    # Imported here: the targets file is looked up at connect(), never at import.
    from vmkit.targets import load_targets

    targets = load_targets()
    target = targets.get(name)
    if target is None:
        if name not in _registered and _entry_point(name) is None:
            known = ", ".join(available()) or "none"
            where = (
                f"targets in {targets.path}: {', '.join(targets.names()) or 'none'}"
                if targets.path is not None
                else "no targets file"
            )
            raise ConfigError(f"unknown provider {name!r}; installed providers: {known}; {where}")
        return _connect(name, load(name), config)
    try:
        cls = load(target.provider)
    except ConfigError as exc:
        raise ConfigError(f"{target.where()}: key 'provider': {exc}") from exc
    accepted = accepted_options(cls)
    if accepted is not None:
        unknown = sorted(set(target.options) - accepted)
        if unknown:
            raise ConfigError(
                f"{target.where()}: key {unknown[0]!r} is not an option of the "
                f"{target.provider} provider; accepted: {', '.join(sorted(accepted))}"
            )
    return _connect(target.provider, cls, {**target.options, **config})


def _connect(name: str, cls: type[Provider], config: dict[str, Any]) -> Provider:
    accepted = accepted_options(cls)
    if accepted is not None:
        unknown = sorted(set(config) - accepted)
        if unknown:
            raise ConfigError(
                f"{name}: unknown option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(accepted))}"
            )
    return cls(**config)


def accepted_options(cls: type[Provider]) -> set[str] | None:
    """The keyword options ``cls`` takes in connect(); None when it takes any."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name != "self"}
