"""The Workload spec: what to run, how big, how many.

``Workload``, ``Resources`` and ``Port`` are pydantic v2 models. Unknown
fields are refused, and any invalid value raises :class:`vmkit.SpecError`
naming the field, before any API call is made.

Importing this module is on the path of every script (``import vmkit;
vmkit.Workload(...)``), so it imports only what building a Workload needs:
PyYAML and json are imported by the functions that use them, and the models'
validators are built on first use (``defer_build``). docs/performance.md has
the measurements.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticSerializationError, to_jsonable_python

from vmkit.errors import SpecError

if TYPE_CHECKING:
    import yaml

__all__ = ["Port", "Resources", "Workload", "format_size", "parse_size"]

_UNITS = {
    "": None,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# The strictest label rules of the four clouds (Compute Engine's), so one
# label set is valid everywhere.
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
_SSH_KEY_RE = re.compile(
    r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$"
)
RESERVED_LABEL_PREFIX = "vmkit-"
MIN_MEMORY = 64 * 2**20


def parse_size(value: Any) -> int:
    """Parse ``"4GiB"``, ``"512MiB"``, ``"30G"``, ``"1Gi"`` or a number of bytes.

    Binary units (KiB/MiB/GiB/TiB, and Kubernetes' Ki/Mi/Gi/Ti) are powers of
    1024; decimal units (KB/MB/GB/TB, K/M/G/T) powers of 1000. A string needs a
    unit: ``"4096"`` is refused because it is almost always a mistake.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size such as '4GiB' or a number of bytes, got a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if isinstance(value, float):
        raise ValueError("expected a size with a unit such as '4GiB', or an integer of bytes")
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as '4GiB', got {type(value).__name__}")
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; use a number and a unit, e.g. '4GiB'")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if unit == "":
        raise ValueError(f"{value!r} has no unit; write e.g. '{number}GiB' or '{number}MiB'")
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} in {value!r}; use KiB, MiB, GiB, TiB, KB, MB, GB")
    scaled = float(number) * factor
    if not math.isfinite(scaled):
        # float() of a few hundred digits is inf, and int(inf) an OverflowError.
        raise ValueError(f"{value!r} is too large to be a size")
    size = int(scaled)
    if size <= 0:
        raise ValueError("must be positive")
    return size


def format_size(size: int) -> str:
    """Format bytes as the shortest exact binary unit: 4294967296 -> '4GiB'."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return f"{size}B"


_SIZE_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[a-zA-Z]+\s*$", "examples": ["4GiB"]},
        {"type": "integer", "exclusiveMinimum": 0, "description": "bytes"},
    ]
}
Size = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(_SIZE_SCHEMA)]


def _process_text(value: str) -> str:
    # Arguments and environment reach a process through execve(2), as C
    # strings of bytes: a NUL would cut the value short, and a lone surrogate
    # has no UTF-8 encoding at all. Refuse both rather than alter the value.
    if "\0" in value:
        raise ValueError("cannot contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("is not valid Unicode text (lone surrogate)") from exc
    return value


#: Text that reaches a process (argv, environment, user data) unchanged.
ProcessText = Annotated[str, AfterValidator(_process_text)]


@functools.cache
def _spec_loader() -> type[yaml.SafeLoader]:
    """PyYAML's safe loader without aliases: a few nested aliases expand a
    1 KB file into gigabytes ("billion laughs"), and a workload has no use
    for them. Defined on first use: importing PyYAML costs about 10 ms, which
    a script that builds its Workload in Python should not pay."""
    import yaml

    class SpecLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "aliases (*name) are not allowed in a workload file; write the value out",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)

    return SpecLoader


# Python functions rather than the builtins dict and list as default factories:
# pydantic reads a default factory's signature, and for a builtin that means
# parsing its text signature with the tokenize module, about 2 ms on the
# first model built.
def _empty_dict() -> dict[Any, Any]:
    return {}


def _empty_list() -> list[Any]:
    return []


class _Model(BaseModel):
    # defer_build: the validators are built at the first validation (or schema)
    # rather than at import, so that a command that never validates a spec
    # (``vmkit --help``, ``vmkit ls``) does not pay for them, nor for pydantic's
    # scan of the installed plugins that the first validator built triggers.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Port(_Model):
    """A port the workload listens on, opened in the firewall and published."""

    port: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


class Resources(_Model):
    """What one replica needs. Resolved to the cheapest instance type that fits."""

    cpu: float = Field(default=1, gt=0, le=1024, description="vCPUs; fractions allowed")
    memory: Size = Field(default=2 * 2**30, description="e.g. '4GiB'")
    disk: Size = Field(default=20 * 2**30, description="boot disk, e.g. '30GiB'")
    gpu: int = Field(default=0, ge=0, le=16)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number of vCPUs, got a boolean")
        try:
            if isinstance(value, int):
                return float(value)
            if isinstance(value, str) and value.endswith("m") and value[:-1].isdigit():
                return int(value[:-1]) / 1000  # Kubernetes millicores, "500m"
        except OverflowError as exc:
            # An integer beyond a float's range: far over any machine's vCPUs.
            raise ValueError("is too large a number of vCPUs") from exc
        return value

    @field_validator("memory")
    @classmethod
    def _memory_floor(cls, value: int) -> int:
        if value < MIN_MEMORY:
            raise ValueError(f"{value} bytes is below 64MiB; did you forget a unit such as 'GiB'?")
        return value

    @field_validator("disk")
    @classmethod
    def _disk_floor(cls, value: int) -> int:
        if value < 2**30:
            raise ValueError("boot disks are at least 1GiB")
        return value


def _ports(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    return [
        {"port": item} if isinstance(item, int) and not isinstance(item, bool) else item
        for item in value
    ]


def _env(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, int | float) and not isinstance(item, bool):
            item = str(item)  # YAML turns PORT: 8080 into an int
        out[key] = item
    return out


class Workload(_Model):
    """What to run, as VMs or as pods. See docs/spec.md for every field."""

    name: str = Field(min_length=1, max_length=40, description="RFC 1123 label")
    image: str | None = Field(default=None, description="container image; None = plain VM")
    command: list[ProcessText] | None = None
    args: list[ProcessText] | None = None
    env: Annotated[dict[str, ProcessText], BeforeValidator(_env)] = Field(
        default_factory=_empty_dict
    )
    ports: Annotated[list[Port], BeforeValidator(_ports)] = Field(default_factory=_empty_list)
    resources: Resources = Field(default_factory=Resources)
    replicas: int = Field(default=1, ge=0, le=1000)
    os_image: str = Field(default="ubuntu-22.04", min_length=1)
    user_data: ProcessText | None = None
    ssh_public_key: str | None = None
    spot: bool = False
    isolation: Literal["container", "sandbox", "vm"] = "container"
    labels: dict[str, str] = Field(default_factory=_empty_dict)
    options: dict[str, dict[str, Any]] = Field(default_factory=_empty_dict)

    _HASH_EXCLUDE: ClassVar[frozenset[str]] = frozenset({"replicas"})

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _spec_error(exc) from exc

    @classmethod
    def from_dict(cls, data: Any) -> Workload:
        """Validate a mapping (e.g. parsed YAML or JSON). Raises SpecError."""
        if not isinstance(data, Mapping):
            raise SpecError("", f"a workload must be a mapping, got {type(data).__name__}")
        return cls(**{str(k): v for k, v in data.items()})

    @classmethod
    def from_yaml(cls, path: str | Path) -> Workload:
        """Load a workload from a YAML file. Raises SpecError naming the field."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError("", f"cannot read {path}: {exc.strerror}") from exc
        return cls.from_yaml_text(text, source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str, *, source: str = "<string>") -> Workload:
        """Load a workload from YAML text. Raises SpecError naming the field."""
        import yaml

        try:
            data = yaml.load(text, Loader=_spec_loader())  # a SafeLoader, without aliases
        except yaml.YAMLError as exc:
            raise SpecError("", f"{source} is not valid YAML: {exc}") from exc
        except RecursionError as exc:
            # PyYAML's composer recurses once per nesting level ("[[[[...").
            raise SpecError("", f"{source} is nested too deeply to be a workload") from exc
        return cls.from_dict(data)

    @field_validator("name")
    @classmethod
    def _rfc1123(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "must be an RFC 1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError("must be a container image reference without spaces")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[Port]) -> list[Port]:
        seen = set()
        for item in value:
            if (item.port, item.protocol) in seen:
                raise ValueError(f"port {item} is listed twice")
            seen.add((item.port, item.protocol))
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(f"label {key!r}: the 'vmkit-' prefix is reserved")
            if not _LABEL_KEY_RE.match(key):
                raise ValueError(
                    f"label key {key!r} must start with a lowercase letter and hold only "
                    "lowercase letters, digits, '_' and '-' (63 at most)"
                )
            if not _LABEL_VALUE_RE.match(item):
                raise ValueError(
                    f"label {key!r}: value {item!r} may hold only lowercase letters, "
                    "digits, '_' and '-' (63 at most)"
                )
        return value

    @field_validator("options")
    @classmethod
    def _plain_options(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # spec_hash and the backends turn options into JSON; a YAML !!binary
        # that is not UTF-8, or a Python object, would fail there instead.
        import json

        try:
            json.dumps(to_jsonable_python(value))
        except (ValueError, TypeError, PydanticSerializationError) as exc:
            raise ValueError(
                "must hold plain YAML/JSON values (strings, numbers, booleans, lists, mappings)"
            ) from exc
        return value

    @field_validator("ssh_public_key")
    @classmethod
    def _ssh_key(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if not _SSH_KEY_RE.match(value):
                raise ValueError("must be an OpenSSH public key, e.g. 'ssh-ed25519 AAAA... me'")
        return value

    @field_validator("command", "args")
    @classmethod
    def _command_needs_image(
        cls, value: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        # image is declared before command and args, so it is validated first.
        if value is not None and info.data.get("image") is None:
            raise ValueError("needs an image to run in")
        return value

    @property
    def spec_hash(self) -> str:
        """A short digest of everything but ``replicas``: replicas whose hash
        differs from the spec's are replaced by a deploy."""
        import json

        body = self.model_dump(mode="json", exclude=set(self._HASH_EXCLUDE))
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def options_for(self, provider: str) -> dict[str, Any]:
        """The ``options[provider]`` overrides (empty when none)."""
        return dict(self.options.get(provider, {}))


def _spec_error(exc: ValidationError) -> SpecError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "is required"
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if len(errors) > 1:
        others = ", ".join(".".join(str(p) for p in err["loc"]) or "<root>" for err in errors[1:])
        message += f" (also invalid: {others})"
    error = SpecError(field, message)
    error.errors = errors  # type: ignore[attr-defined]
    return error
