"""The targets file: named connections, so ``--on prod-aws`` means one provider
with its options.

::

    # vmkit.yaml
    prod-aws: {provider: aws, region: eu-west-1}
    staging-k8s: {provider: kubernetes, context: staging}

The file is found, in order: ``vmkit.yaml`` in the working directory, the
path in ``$VMKIT_CONFIG``, ``$XDG_CONFIG_HOME/vmkit/vmkit.yaml`` (default
``~/.config/vmkit/vmkit.yaml``). It is read only when asked for (never at
``import vmkit``), and parsed again only when it changes.

It holds no secrets: a key that names a credential is refused, because
credentials come from each SDK's own chain (environment variables, profiles,
kubeconfig, managed identities).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmkit.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "FILE_NAME",
    "HOW_TO",
    "Target",
    "Targets",
    "find_target",
    "find_targets_file",
    "is_secret_key",
    "load_targets",
]

FILE_NAME = "vmkit.yaml"
CONFIG_ENV = "VMKIT_CONFIG"

# RFC 1123 label: what every cloud and Kubernetes accept as a name.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SECRET_KEYS = frozenset(
    {
        "credential",
        "credentials",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "client_secret",
    }
)
_SECRET_PARTS = ("secret", "password", "token", "private_key")

#: Where to write a targets file, for error messages.
HOW_TO = (
    f"write a {FILE_NAME} (target name -> {{provider: ..., <connect options>}}) in the "
    f"working directory, at ${CONFIG_ENV} or at ~/.config/vmkit/{FILE_NAME}, "
    "or pass --on PROVIDER"
)


@dataclass(frozen=True)
class Target:
    """One named connection: ``connect(provider, **options)``."""

    name: str
    provider: str
    options: Mapping[str, Any]
    path: Path

    def where(self) -> str:
        """``<file>: target '<name>'``, the prefix of every error about it."""
        return f"{self.path}: target {self.name!r}"


@dataclass(frozen=True)
class Targets:
    """The targets of one file, in the file's order (empty when there is no file)."""

    path: Path | None = None
    by_name: Mapping[str, Target] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Target]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def names(self) -> list[str]:
        """The target names, in the file's order."""
        return list(self.by_name)

    def get(self, name: str) -> Target | None:
        """The target called ``name``, or None."""
        return self.by_name.get(name)


def _config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    return Path(base) if base else Path.home() / ".config"


def find_targets_file() -> Path | None:
    """The targets file to use, or None when there is none.

    Raises ConfigError when ``$VMKIT_CONFIG`` names a file that does not exist
    (a typo there must not silently fall through to another file).
    """
    local = Path.cwd() / FILE_NAME
    if local.is_file():
        return local
    configured = os.environ.get(CONFIG_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(f"${CONFIG_ENV} is {configured}, which is not a file")
        return path
    user = _config_home() / "vmkit" / FILE_NAME
    return user if user.is_file() else None


_cache: dict[Path, tuple[tuple[int, int], Targets]] = {}
_cache_lock = threading.Lock()


def load_targets(path: str | os.PathLike[str] | None = None) -> Targets:
    """The targets of ``path``, or of the file :func:`find_targets_file` finds.

    No file gives an empty :class:`Targets`. Every problem is a ConfigError
    naming the file, the target and the key; a value is never echoed, so a
    secret pasted by mistake does not reach a log. A file is parsed again only
    when its size or modification time changes.
    """
    found = Path(path) if path is not None else find_targets_file()
    if found is None:
        return Targets()
    try:
        stat = found.stat()
    except OSError as exc:
        raise ConfigError(f"{found}: cannot read the targets file: {exc.strerror}") from exc
    version = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(found)
        if cached is not None and cached[0] == version:
            return cached[1]
    targets = _parse(found)
    with _cache_lock:
        _cache[found] = (version, targets)
    return targets


def find_target(name: str) -> Target | None:
    """The target called ``name`` in the targets file, or None (also when
    there is no file)."""
    return load_targets().get(name)


def _parse(path: Path) -> Targets:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the targets file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the position and the problem: PyYAML's own message quotes the
        # offending line, which may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return Targets(path, {})
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the targets file is a mapping of target name -> "
            "{provider: ..., <connect options>}"
        )
    by_name: dict[str, Target] = {}
    for name, body in data.items():
        target = _target(path, name, body)
        by_name[target.name] = target
    return Targets(path, by_name)


def _target(path: Path, name: object, body: object) -> Target:
    if not isinstance(name, str) or not _LABEL.fullmatch(name):
        raise ConfigError(
            f"{path}: target {name!r}: a target name is an RFC 1123 label "
            "(lowercase letters, digits and '-', 1-63 characters, starting and ending "
            "with a letter or digit)"
        )
    where = f"{path}: target {name!r}"
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: must be a mapping with a 'provider' key and its options")
    _refuse_secrets(where, body)
    options = dict(body)
    provider = options.pop("provider", None)
    if provider is None:
        raise ConfigError(f"{where}: key 'provider' is missing (aws, gcp, azure, kubernetes...)")
    if not isinstance(provider, str) or not provider.strip():
        raise ConfigError(f"{where}: key 'provider' must be a provider name")
    return Target(name=name, provider=provider.strip(), options=options, path=path)


def is_secret_key(key: str) -> bool:
    """True for an option name that holds a credential."""
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(part in lowered for part in _SECRET_PARTS)


def _refuse_secrets(where: str, body: Mapping[Any, Any], prefix: str = "") -> None:
    """Refuse credential keys at any depth; the message names the key only."""
    for key, value in body.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: key {prefix}{key!r} must be a string")
        if is_secret_key(key):
            raise ConfigError(
                f"{where}: key {prefix + key!r} holds a credential, and the targets file "
                "holds no secrets: credentials come from each SDK's own chain "
                "(environment variables, profiles, kubeconfig, managed identity...)"
            )
        if isinstance(value, dict):
            _refuse_secrets(where, value, f"{prefix}{key}.")
