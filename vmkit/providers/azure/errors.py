"""azure-core exceptions -> the vmkit hierarchy, at one boundary.

ARM answers errors as ``{"error": {"code", "message"}}``; azure-core parses that into
``HttpResponseError.error`` (``ODataV4Format``) and a failed long-running operation
raises the same type with the operation's error. Codes are those of "Troubleshoot
common Azure deployment errors"
(https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors)
and of the throttling page
(https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling).
ARM never puts the bearer token in an error; vmkit adds nothing from the request.
"""

from __future__ import annotations

import urllib.error
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

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

__all__ = ["AzureErrors", "azure_error_code"]

PROVIDER = "azure"

THROTTLING_CODES = frozenset(
    {"TooManyRequests", "SubscriptionRequestsThrottled", "ResourceGroupRequestsThrottled"}
)
AUTH_CODES = frozenset(
    {
        "AuthorizationFailed",
        "AuthenticationFailed",
        "InvalidAuthenticationToken",
        "InvalidAuthenticationTokenTenant",
        "ExpiredAuthenticationToken",
        "LinkedAuthorizationFailed",
        "MissingSubscriptionRegistration",
        "SubscriptionNotFound",
    }
)
# Capacity answers are not transient in the seconds a retry covers: the user must act
# (other size, region, or a quota request).
QUOTA_CODES = frozenset(
    {
        "QuotaExceeded",
        "OperationNotAllowed",
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "SkuNotAvailable",
        "PublicIPCountLimitReached",
        "SpotVMEvictionPolicyNotSupported",
    }
)
NOT_FOUND_CODES = frozenset(
    {"ResourceNotFound", "ResourceGroupNotFound", "NotFound", "PlatformImageNotFound"}
)
UNSUPPORTED_CODES = frozenset({"NotSupported", "FeatureNotSupported"})


def azure_error_code(exc: BaseException | None) -> str | None:
    """The ARM error code of an HttpResponseError, or of the one behind a vmkit error."""
    while exc is not None:
        if isinstance(exc, HttpResponseError):
            if exc.error is not None and exc.error.code:
                return str(exc.error.code)
            return None
        exc = exc.__cause__
    return None


def _message(exc: HttpResponseError, operation: str) -> str:
    code = azure_error_code(exc) or (str(exc.status_code) if exc.status_code else "Unknown")
    text = exc.error.message if exc.error is not None and exc.error.message else exc.reason
    return f"{operation}: {text or 'no message'} ({code})"


def _is_quota(exc: HttpResponseError) -> bool:
    code = azure_error_code(exc) or ""
    if code == "OperationNotAllowed":
        # OperationNotAllowed is quota only when the message says so ("... exceeding
        # approved Total Regional Cores quota"); otherwise it is a refused action.
        text = exc.error.message if exc.error is not None else ""
        return "quota" in (text or "").lower()
    return code in QUOTA_CODES


class AzureErrors:
    """vmkit's :class:`~vmkit.retry.ErrorMap` for azure-core (and the SAS blob fetch)."""

    def is_retryable(self, exc: BaseException) -> bool:
        """429 and throttling codes, HTTP 5xx other than capacity, connection errors."""
        if isinstance(exc, ClientAuthenticationError):
            return False
        if isinstance(exc, HttpResponseError):
            if _is_quota(exc):
                return False
            code = azure_error_code(exc) or ""
            status = exc.status_code or 0
            return status == 429 or code in THROTTLING_CODES or status >= 500
        if isinstance(exc, urllib.error.HTTPError):
            return exc.code == 429 or exc.code >= 500
        # A request that never left (ServiceRequestError) or whose answer was lost
        # (ServiceResponseError): every call vmkit sends is safe to repeat (PUT by name).
        return isinstance(exc, ServiceRequestError | ServiceResponseError | urllib.error.URLError)

    def retry_after(self, exc: BaseException) -> float | None:
        """ARM's Retry-After header (seconds) on a 429 or 503, when sent."""
        headers: Any = None
        if isinstance(exc, HttpResponseError) and exc.response is not None:
            headers = getattr(exc.response, "headers", None)
        elif isinstance(exc, urllib.error.HTTPError):
            headers = exc.headers
        value = headers.get("Retry-After") if headers is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        """The most specific vmkit error for ``exc``; the message keeps ARM's own."""
        if isinstance(exc, ClientAuthenticationError):
            return AuthError(_message(exc, operation), provider=PROVIDER, operation=operation)
        if isinstance(exc, HttpResponseError):
            return self._translate_response(exc, operation)
        if isinstance(exc, urllib.error.HTTPError):
            return ProviderError(
                f"{operation}: HTTP {exc.code} {exc.reason}", provider=PROVIDER, operation=operation
            )
        if type(exc).__name__ == "CredentialUnavailableError":
            return AuthError(f"{operation}: {exc}", provider=PROVIDER, operation=operation)
        return fallback_error(
            exc,
            operation,
            provider=PROVIDER,
            service="Azure",
            retryable=self.is_retryable(exc),
            from_sdk=isinstance(exc, AzureError),
        )

    def _translate_response(self, exc: HttpResponseError, operation: str) -> VmkitError:
        code = azure_error_code(exc) or ""
        status = exc.status_code or 0
        kind: type[ProviderError] = ProviderError
        if code in AUTH_CODES or status in (401, 403):
            kind = AuthError
        elif _is_quota(exc):
            kind = QuotaExceeded
        elif code in THROTTLING_CODES or status == 429:
            # Reached only once the retry budget is spent.
            kind = Throttled
        elif isinstance(exc, ResourceNotFoundError) or code in NOT_FOUND_CODES or status == 404:
            kind = NotFound
        elif code in UNSUPPORTED_CODES:
            kind = Unsupported
        return kind(_message(exc, operation), provider=PROVIDER, operation=operation)
