"""The vmkit exception hierarchy.

Every error vmkit raises is a :class:`VmkitError`. Errors that come from a
cloud keep the SDK's own exception as ``__cause__`` (``raise ... from exc``);
their messages never contain credentials or secret values.

::

    VmkitError
    ├── SpecError (also ValueError)      invalid Workload, raised before any API call
    ├── ConfigError (also ValueError)    unknown provider, missing extra, bad connect() option
    └── ProviderError                    the cloud refused or failed
        ├── NotFound
        ├── AuthError
        ├── QuotaExceeded
        ├── Throttled
        ├── Unsupported
        └── DeployTimeout
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AuthError",
    "ConfigError",
    "DeployTimeout",
    "NotFound",
    "ProviderError",
    "QuotaExceeded",
    "SpecError",
    "Throttled",
    "Unsupported",
    "VmkitError",
]


class VmkitError(Exception):
    """Base class of every error vmkit raises."""


class SpecError(VmkitError, ValueError):
    """A Workload is invalid. ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(VmkitError, ValueError):
    """vmkit cannot be set up as asked: unknown provider, missing extra, bad option."""


class ProviderError(VmkitError):
    """The provider refused or failed an operation.

    ``provider`` is the backend name (``"aws"``...), ``operation`` the API call
    or vmkit operation that failed, when known. When a deploy fails for some
    replicas, ``failed`` maps each failed replica's name to the reason
    (``{"web-3": "QuotaExceeded: ..."}``), and ``left`` names what its
    cleanup could not delete; both are empty otherwise.
    """

    def __init__(
        self, message: str, *, provider: str | None = None, operation: str | None = None
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.failed: Mapping[str, str] = {}
        self.left: tuple[str, ...] = ()
        super().__init__(message)


class NotFound(ProviderError):
    """The machine, snapshot or resource does not exist (or no longer does)."""


class AuthError(ProviderError):
    """Credentials are missing, invalid or lack a permission."""


class QuotaExceeded(ProviderError):
    """A quota, limit or capacity stopped the operation."""


class Throttled(ProviderError):
    """The provider kept throttling until the retry budget ran out."""


class Unsupported(ProviderError):
    """The backend cannot do this (e.g. stop a Kubernetes pod)."""


class DeployTimeout(ProviderError):
    """Machines did not reach the wanted state in time. ``pending`` names them."""

    def __init__(
        self,
        message: str,
        *,
        pending: Sequence[str] = (),
        provider: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.pending = tuple(pending)
        super().__init__(message, provider=provider, operation=operation)
