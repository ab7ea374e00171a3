"""botocore exceptions -> the vmkit hierarchy, at one boundary.

Error codes are EC2's, from "Error codes for the Amazon EC2 API"
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html);
the throttling codes are those botocore itself treats as throttling
(botocore/retries/standard.py, ``ThrottledRetryableChecker``) that EC2 and SSM
send. Messages keep AWS's own message and code; AWS never puts credentials in
an error message, and vmkit adds nothing from the request.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

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

__all__ = ["AwsErrors", "aws_error_code"]

PROVIDER = "aws"

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "EC2ThrottledException",
    }
)
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AccessDenied",
        "AccessDeniedException",
        "OptInRequired",
        "Blocked",
    }
)
# Capacity answers are sent with HTTP 500 by EC2 ("server error codes" on the
# page above) yet are not transient in the seconds a retry covers: they are a
# quota-like condition the user must act on (other type, zone, or later).
QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientAddressCapacity",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "VolumeLimitExceeded",
        "SecurityGroupLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "ResourceLimitExceeded",
    }
)
# A malformed id names nothing; SSM's missing parameter has no ".NotFound" suffix.
NOT_FOUND_CODES = frozenset(
    {"InvalidInstanceID.Malformed", "InvalidAMIID.Malformed", "ParameterNotFound"}
)
UNSUPPORTED_CODES = frozenset({"Unsupported", "UnsupportedOperation"})
# botocore's own transient codes (botocore/retries/standard.py, TransientRetryableChecker).
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable"}
)


def aws_error_code(exc: BaseException | None) -> str | None:
    """The AWS error code of a ClientError, or of the ClientError behind a vmkit error."""
    while exc is not None:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code")
            return str(code) if code else None
        exc = exc.__cause__
    return None


def _status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else 0


def _message(exc: ClientError, operation: str) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code") or "Unknown"
    text = error.get("Message") or "no message"
    return f"{operation}: {text} ({code})"


class AwsErrors:
    """vmkit's :class:`~vmkit.retry.ErrorMap` for boto3/botocore."""

    def is_retryable(self, exc: BaseException) -> bool:
        """Throttling codes, HTTP 5xx other than capacity, and connection errors."""
        if isinstance(exc, ClientError):
            code = aws_error_code(exc) or ""
            if code in QUOTA_CODES:
                return False
            return code in THROTTLING_CODES or code in TRANSIENT_CODES or _status(exc) >= 500
        if isinstance(exc, SSLError):
            return False  # a certificate problem does not heal by retrying
        return isinstance(
            exc,
            BotoConnectionError
            | EndpointConnectionError
            | ReadTimeoutError
            | ConnectionClosedError,
        )

    def retry_after(self, exc: BaseException) -> float | None:
        """EC2 does not send Retry-After; honour it when a front (proxy, fake) does."""
        if not isinstance(exc, ClientError):
            return None
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        value = headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        """The most specific vmkit error for ``exc``; the message keeps AWS's code."""
        if isinstance(exc, ClientError):
            return self._translate_client_error(exc, operation)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return AuthError(
                f"{operation}: {exc}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "pass profile= (see `aws configure`), or run where an instance role applies",
                provider=PROVIDER,
                operation=operation,
            )
        if isinstance(exc, ProfileNotFound):
            return ConfigError(f"aws: {exc}")
        return fallback_error(
            exc,
            operation,
            provider=PROVIDER,
            service="AWS",
            retryable=self.is_retryable(exc),
            from_sdk=isinstance(exc, BotoCoreError),
        )

    def _translate_client_error(self, exc: ClientError, operation: str) -> VmkitError:
        code = aws_error_code(exc) or ""
        message = _message(exc, operation)
        kind: type[ProviderError] = ProviderError
        if code in AUTH_CODES:
            kind = AuthError
        elif code in QUOTA_CODES:
            kind = QuotaExceeded
        elif code in THROTTLING_CODES:
            # Reached only once the retry budget is spent.
            kind = Throttled
        elif code.endswith(".NotFound") or code in NOT_FOUND_CODES:
            kind = NotFound
        elif code in UNSUPPORTED_CODES:
            kind = Unsupported
        return kind(message, provider=PROVIDER, operation=operation)
