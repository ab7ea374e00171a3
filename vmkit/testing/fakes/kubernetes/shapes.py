"""Kubernetes REST shapes the fake answers with: Status, timestamps, quantities.

Shapes follow the Kubernetes API reference and the generated models of the
official Python client (kubernetes 36, ``kubernetes/client/models/``):

* Status: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/
  (``v1_status.py``, ``v1_status_details.py``, ``v1_status_cause.py``)
* Pod: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
* Event: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/
  (``core_v1_event.py``)
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "JSON",
    "FieldError",
    "format_micro",
    "format_nano",
    "format_time",
    "invalid_status_message",
    "parse_quantity",
    "status_object",
]

JSON = dict[str, Any]

# Reasons for HTTP codes, as k8s.io/apimachinery/pkg/apis/meta/v1 StatusReason*.
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_object(
    code: int,
    message: str,
    reason: str | None = None,
    details: JSON | None = None,
) -> JSON:
    """A ``Status`` with ``status: Failure``; ``details`` only when given,
    as the API server omits empty details."""
    # Field names and the Failure/Success values: the Status reference above
    # and kubernetes/client/models/v1_status.py.
    status: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, ""),
        "code": code,
    }
    if details is not None:
        status["details"] = details
    return status


# ------------------------------------------------------------------ validation


class FieldError:
    """One field error of an Invalid (422) Status, as
    k8s.io/apimachinery/pkg/util/validation/field.Error renders it."""

    def __init__(self, kind: str, field: str, detail: str = "", value: Any = None) -> None:
        self.kind = kind
        self.field = field
        self.detail = detail
        self.value = value

    @property
    def reason(self) -> str:
        return {
            "invalid": "FieldValueInvalid",
            "required": "FieldValueRequired",
            "duplicate": "FieldValueDuplicate",
            "unsupported": "FieldValueNotSupported",
            "forbidden": "FieldValueForbidden",
        }[self.kind]

    def body(self) -> str:
        """The message without the field path (StatusCause.message)."""
        if self.kind == "required":
            return "Required value" + (f": {self.detail}" if self.detail else "")
        if self.kind == "forbidden":
            return f"Forbidden: {self.detail}"
        label = {
            "invalid": "Invalid value",
            "duplicate": "Duplicate value",
            "unsupported": "Unsupported value",
        }[self.kind]
        rendered = f'"{self.value}"' if isinstance(self.value, str) else str(self.value)
        return f"{label}: {rendered}" + (f": {self.detail}" if self.detail else "")

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> JSON:
        return {"reason": self.reason, "message": self.body(), "field": self.field}


def invalid_status_message(kind: str, name: str, errors: list[FieldError]) -> str:
    """``Pod "x" is invalid: a: ...`` (one error) or ``[a: ..., b: ...]`` (several),
    as apimachinery errors.NewInvalid formats it."""
    if len(errors) == 1:
        return f'{kind} "{name}" is invalid: {errors[0]}'
    return f'{kind} "{name}" is invalid: [{", ".join(str(e) for e in errors)}]'


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# The texts of k8s.io/apimachinery/pkg/util/validation/validation.go.
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-',"
    " and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc',"
    " regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,"
    " '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com',"
    " regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
    "[a-z0-9])?)*')"
)


def dns1123_label_errors(field: str, value: str) -> list[FieldError]:
    """Errors of an RFC 1123 label (namespace and container names): 63 chars."""
    errors = []
    if len(value) > 63:
        errors.append(FieldError("invalid", field, "must be no more than 63 characters", value))
    if not _DNS1123_LABEL.match(value):
        errors.append(FieldError("invalid", field, _LABEL_MSG, value))
    return errors


def dns1123_subdomain_errors(field: str, value: str) -> list[FieldError]:
    """Errors of an RFC 1123 subdomain (pod names): 253 chars."""
    errors = []
    if len(value) > 253:
        errors.append(FieldError("invalid", field, "must be no more than 253 characters", value))
    if not _DNS1123_SUBDOMAIN.match(value):
        errors.append(FieldError("invalid", field, _SUBDOMAIN_MSG, value))
    return errors


def label_errors(field: str, labels: Any) -> list[FieldError]:
    """Errors of a label map: qualified-name keys, values of at most 63 chars."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [FieldError("invalid", field, "must be a map of strings", str(labels))]
    errors: list[FieldError] = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not _QUALIFIED_NAME.match(name)
            or (prefix and not _DNS1123_SUBDOMAIN.match(prefix))
        ):
            errors.append(
                FieldError(
                    "invalid",
                    field,
                    "name part must consist of alphanumeric characters,"
                    " '-', '_' or '.', and must start and end with an alphanumeric"
                    " character",
                    key,
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(
                FieldError(
                    "invalid",
                    field,
                    "a valid label must be an empty string or consist"
                    " of alphanumeric characters, '-', '_' or '.', and must start and"
                    " end with an alphanumeric character",
                    value,
                )
            )
    return errors


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return (
        bool(name)
        and len(name) <= 63
        and bool(_QUALIFIED_NAME.match(name))
        and (not prefix or bool(_DNS1123_SUBDOMAIN.match(prefix)))
    )


# ------------------------------------------------------------------ quantities

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


def parse_quantity(value: Any) -> Decimal:
    """A resource.Quantity ("500m", "4Gi", "1e3", 2) as a Decimal; ValueError
    with the API server's message when malformed."""
    # Grammar: k8s.io/apimachinery/pkg/api/resource/quantity.go.
    if isinstance(value, bool):
        raise ValueError(QUANTITY_ERROR)
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError(QUANTITY_ERROR)
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(QUANTITY_ERROR)
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(QUANTITY_ERROR) from exc
    if suffix in _SUFFIXES:
        return base * _SUFFIXES[suffix]
    exponent = re.fullmatch(r"[eE]([-+]?[0-9]+)", suffix)
    if exponent:
        return base * (Decimal(10) ** int(exponent.group(1)))
    raise ValueError(QUANTITY_ERROR)


# ------------------------------------------------------------------ timestamps


def format_time(at: float) -> str:
    """metav1.Time: RFC 3339 with second precision, UTC."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(at: float) -> str:
    """metav1.MicroTime (Event.eventTime): microsecond precision."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_nano(at: float) -> str:
    """RFC 3339 with nanoseconds, as the kubelet prefixes log lines (timestamps=true)."""
    whole = int(at)
    nanos = round((at - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def now() -> float:
    return time.time()
