"""google-api-core / google-auth exceptions and failed operations -> the vmkit hierarchy.

With the REST transport an HTTP error becomes a ``GoogleAPICallError`` subclass
per status (google/api_core/exceptions.py, ``from_http_status``) whose
``errors`` are the body's ``error.errors[]`` items with their ``reason``
(``quotaExceeded``, ``rateLimitExceeded``, ``insufficientCapacity``...; the
reasons of https://cloud.google.com/compute/docs/reference/rest/v1/errors
"Standard error messages"). A lost response surfaces as a
``requests.exceptions.ConnectionError`` (api_core does not wrap it) and a
refused token as a ``google.auth.exceptions`` error. Long-running failures
(quota, capacity) arrive on the DONE Operation instead, as
``error.errors[{code, message}]`` with ``httpErrorStatusCode``.
"""

from __future__ import annotations

from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from vmkit.errors import (
    AuthError,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Throttled,
    Unsupported,
    VmkitError,
)
from vmkit.retry import fallback_error

__all__ = ["GcpErrors", "error_reasons", "operation_error"]

PROVIDER = "gcp"

THROTTLE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
QUOTA_REASONS = frozenset(
    {"quotaExceeded", "insufficientCapacity", "resourceExhausted", "limitExceeded"}
)
# Operation error codes that a user must act on (another zone, size or more quota).
QUOTA_CODES = frozenset(
    {
        "QUOTA_EXCEEDED",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_POOL_EXHAUSTED",
        "INSUFFICIENT_CAPACITY",
    }
)
NOT_FOUND_CODES = frozenset({"RESOURCE_NOT_FOUND", "NOT_FOUND"})
TRANSIENT = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
)


def error_reasons(exc: BaseException | None) -> set[str]:
    """The ``reason`` of every ``error.errors[]`` item behind ``exc`` (or its cause)."""
    while exc is not None:
        if isinstance(exc, gexc.GoogleAPICallError):
            reasons = {str(e.get("reason")) for e in exc.errors if isinstance(e, dict)}
            if exc.reason:
                reasons.add(str(exc.reason))
            return reasons
        exc = exc.__cause__
    return set()


def _message(exc: gexc.GoogleAPICallError, operation: str) -> str:
    reasons = ", ".join(sorted(error_reasons(exc))) or "no reason"
    return f"{operation}: {exc.message} (HTTP {exc.code}, {reasons})"


class GcpErrors:
    """vmkit's :class:`~vmkit.retry.ErrorMap` for google-cloud-compute."""

    def is_retryable(self, exc: BaseException) -> bool:
        """429, 5xx other than capacity, 403 rate limits, connection errors."""
        if isinstance(exc, gexc.GoogleAPICallError):
            reasons = error_reasons(exc)
            if reasons & QUOTA_REASONS:
                return False
            return isinstance(exc, TRANSIENT) or bool(reasons & THROTTLE_REASONS)
        return isinstance(
            exc,
            requests.exceptions.ConnectionError
            | requests.exceptions.Timeout
            | requests.exceptions.ChunkedEncodingError
            | auth_exc.TransportError,
        )

    def retry_after(self, exc: BaseException) -> float | None:
        """Retry-After of the HTTP answer, when one was sent."""
        response: Any = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        if not headers:
            return None
        value = headers.get("Retry-After")
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        """The most specific vmkit error for ``exc``; the message keeps Google's."""
        if isinstance(exc, gexc.GoogleAPICallError):
            return self._translate_call_error(exc, operation)
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            return AuthError(f"{operation}: {exc}", provider=PROVIDER, operation=operation)
        if isinstance(exc, auth_exc.GoogleAuthError) and not isinstance(
            exc, auth_exc.TransportError
        ):
            # RefreshError and friends may quote the token endpoint's answer;
            # only the kind of failure is reported.
            return AuthError(
                f"{operation}: the credentials were refused or could not be refreshed "
                f"({type(exc).__name__})",
                provider=PROVIDER,
                operation=operation,
            )
        return fallback_error(
            exc,
            operation,
            provider=PROVIDER,
            service="Compute Engine",
            retryable=self.is_retryable(exc),
        )

    def _translate_call_error(self, exc: gexc.GoogleAPICallError, operation: str) -> VmkitError:
        reasons = error_reasons(exc)
        kind: type[ProviderError] = ProviderError
        if reasons & QUOTA_REASONS:
            kind = QuotaExceeded
        elif reasons & THROTTLE_REASONS or isinstance(exc, gexc.TooManyRequests):
            kind = Throttled
        elif isinstance(exc, gexc.Unauthorized | gexc.Forbidden | gexc.PermissionDenied):
            kind = AuthError
        elif isinstance(exc, gexc.NotFound):
            kind = NotFound
        elif isinstance(exc, gexc.MethodNotImplemented):
            kind = Unsupported
        return kind(_message(exc, operation), provider=PROVIDER, operation=operation)


def operation_error(operation_record: Any, operation: str, subject: str = "") -> ProviderError:
    """The vmkit error for a DONE Operation that carries ``error.errors``.

    ``operation_record`` is a ``compute_v1.Operation``; the message keeps each
    error's code and message (``subject`` says what failed, e.g. the replicas).
    """
    errors = list(operation_record.error.errors)
    codes = {str(e.code) for e in errors}
    text = "; ".join(f"{e.message} ({e.code})" for e in errors) or "unknown error"
    status = getattr(operation_record, "http_error_status_code", 0) or 0
    head = f"{operation}: {subject}: " if subject else f"{operation}: "
    message = f"{head}{text}" + (f" (HTTP {status})" if status else "")
    kind: type[ProviderError] = ProviderError
    if codes & QUOTA_CODES:
        kind = QuotaExceeded
    elif codes & NOT_FOUND_CODES:
        kind = NotFound
    elif status in (401, 403):
        kind = AuthError
    return kind(message, provider=PROVIDER, operation=operation)
