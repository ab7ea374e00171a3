"""kubernetes-client / urllib3 exceptions -> the vmkit hierarchy, at one boundary.

The API server answers every error with a ``Status`` object (``code``,
``reason``, ``message``, ``details``), "API Concepts" and the Status
reference: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/
and the reasons of k8s.io/apimachinery/pkg/apis/meta/v1/types.go
(``StatusReason``). The client raises ``ApiException`` carrying the HTTP
status, headers and that body; connection trouble surfaces as urllib3
exceptions because vmkit turns urllib3's own retries off (see
:mod:`.connection`). Messages keep the API server's message and reason; the
API server never echoes a bearer token, and vmkit adds nothing from the
request.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from vmkit.errors import (
    AuthError,
    ConfigError,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Throttled,
    Unsupported,
    VmkitError,
)
from vmkit.retry import fallback_error

__all__ = ["PROVIDER", "KubernetesErrors", "api_status", "status_body"]

PROVIDER = "kubernetes"

# 429 is API Priority and Fairness (or the max-in-flight filter) shedding load;
# 5xx are the API server's or etcd's transient failures, 504 included (a watch
# cache not yet fresh: "Too large resource version"). 501 Not Implemented is
# not transient.
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def api_status(exc: BaseException | None) -> int | None:
    """The HTTP status of an ApiException, or of the one behind a vmkit error."""
    while exc is not None:
        if isinstance(exc, ApiException):
            return int(exc.status) if exc.status else None
        exc = exc.__cause__
    return None


def status_body(exc: BaseException | None) -> dict[str, Any]:
    """The ``Status`` object of an ApiException (or the one behind a vmkit
    error); empty when the answer was not a Status."""
    while exc is not None:
        if isinstance(exc, ApiException):
            return _parse_status(exc.body)
        exc = exc.__cause__
    return {}


def _parse_status(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) and parsed.get("kind") == "Status" else {}


def _causes(status: dict[str, Any]) -> list[dict[str, Any]]:
    causes = (status.get("details") or {}).get("causes") or []
    return [c for c in causes if isinstance(c, dict)]


class KubernetesErrors:
    """vmkit's :class:`~vmkit.retry.ErrorMap` for the official Python client."""

    def is_retryable(self, exc: BaseException) -> bool:
        """429, 5xx (but 501) and connection errors; never TLS failures."""
        if isinstance(exc, ApiException):
            # status 0: the client wraps a TLS failure this way (rest.py).
            return exc.status in _RETRYABLE_STATUS
        if isinstance(exc, urllib3.exceptions.SSLError | urllib3.exceptions.LocationValueError):
            return False
        # ProtocolError (reset, response lost after the request committed),
        # NewConnectionError, timeouts, MaxRetryError.
        return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError)

    def retry_after(self, exc: BaseException) -> float | None:
        """The ``Retry-After`` header, else the Status' ``details.retryAfterSeconds``.

        API Priority and Fairness sends both with a 429
        (https://kubernetes.io/docs/concepts/cluster-administration/flow-control/).
        """
        if not isinstance(exc, ApiException):
            return None
        headers = exc.headers or {}
        value = headers.get("Retry-After") or headers.get("retry-after")
        if value is None:
            value = (_parse_status(exc.body).get("details") or {}).get("retryAfterSeconds")
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        """The most specific vmkit error for ``exc``; the message keeps the Status'."""
        if isinstance(exc, ApiException):
            return self._translate_api(exc, operation)
        if isinstance(exc, ConfigException):
            return ConfigError(f"kubernetes: {exc}")
        if isinstance(exc, urllib3.exceptions.SSLError):
            return ProviderError(
                f"{operation}: TLS failure talking to the API server: {exc}",
                provider=PROVIDER,
                operation=operation,
            )
        return fallback_error(
            exc,
            operation,
            provider=PROVIDER,
            service="the API server",
            retryable=self.is_retryable(exc),
        )

    def _translate_api(self, exc: ApiException, operation: str) -> VmkitError:
        code = int(exc.status or 0)
        status = _parse_status(exc.body)
        reason = str(status.get("reason") or exc.reason or "")
        text = str(status.get("message") or exc.reason or "no message")
        message = f"{operation}: {text} ({reason or 'HTTP'} {code})"
        kind: type[ProviderError] = ProviderError
        if code == 0:
            message = f"{operation}: TLS failure talking to the API server: {exc.reason}"
        elif code == 401:
            kind = AuthError
        elif code == 403:
            # ResourceQuota admission refuses with 403 Forbidden, "exceeded quota: ..."
            # (https://kubernetes.io/docs/concepts/policy/resource-quotas/); a
            # terminating namespace is a 403 too but no permission problem.
            if "exceeded quota" in text:
                kind = QuotaExceeded
            elif "pod rejected: RuntimeClass" in text:
                # The RuntimeClass admission plugin: the pod names a class the
                # cluster does not have (plugin/pkg/admission/runtimeclass/admission.go).
                kind = Unsupported
                message += (
                    ": install that runtime on the nodes and create its RuntimeClass, or map "
                    "the isolation level to a class the cluster has with runtime_classes="
                )
            elif not any(c.get("reason") == "NamespaceTerminating" for c in _causes(status)):
                kind = AuthError
        elif code == 404:
            kind = NotFound
        elif code == 429:
            # Reached only once the retry budget is spent.
            kind = Throttled
        return kind(message, provider=PROVIDER, operation=operation)
