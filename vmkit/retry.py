"""The one retry policy every backend shares.

Throttling, 5xx answers and connection errors are retried with exponential
backoff and full jitter (a random wait between 0 and ``min(cap, base * 2**n)``),
bounded both by a number of attempts and by a total time; a ``Retry-After``
the cloud sent is honoured as the minimum wait. Anything else fails at once.
Which errors are retryable, and what each SDK error becomes, is each
backend's ``errors.py``: it implements :class:`ErrorMap`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import tenacity

from vmkit.errors import ConfigError, ProviderError, VmkitError

__all__ = ["ErrorMap", "RetryPolicy", "call_with_retry", "fallback_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class ErrorMap(Protocol):
    """What a backend says about its SDK's exceptions."""

    def is_retryable(self, exc: BaseException) -> bool:
        """True for throttling, 5xx and connection errors."""
        ...

    def retry_after(self, exc: BaseException) -> float | None:
        """Seconds the cloud asked us to wait (Retry-After), if it said."""
        ...

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        """The most specific vmkit error for ``exc`` (no secrets in the message)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop. Set through ``connect(..., retry_attempts=,
    retry_timeout=)``.

    ``attempts`` counts every try, the first included; ``timeout`` is the
    total seconds the retries may take: a wait that would pass it is not
    started, so a call never hangs past its budget.
    """

    attempts: int = 8
    timeout: float = 120.0
    base: float = 0.5
    cap: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"retry_attempts must be at least 1, got {self.attempts}")
        if self.timeout < 0:
            raise ConfigError(f"retry_timeout must be >= 0 seconds, got {self.timeout}")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (full jitter)."""
        ceiling = min(self.cap, self.base * 2 ** max(attempt - 1, 0))
        wait = random.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


def call_with_retry(
    policy: RetryPolicy,
    errors: ErrorMap,
    operation: str,
    fn: Callable[[], T],
    *,
    on_attempt: Callable[[], None] | None = None,
) -> T:
    """Call ``fn`` under ``policy``; raise the translated vmkit error from the SDK's.

    ``fn`` must be safe to repeat: a create carries its idempotency key inside
    the closure, so every retry sends the same key.
    """
    started = time.monotonic()

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = errors.retry_after(exc) if exc is not None else None
        return policy.backoff(state.attempt_number, hint)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        pending = state.upcoming_sleep or 0.0
        return time.monotonic() - started + pending > policy.timeout

    def attempt() -> T:
        if on_attempt is not None:
            on_attempt()
        return fn()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.debug(
            "%s: attempt %d failed (%s), retrying in %.2fs",
            operation,
            state.attempt_number,
            type(exc).__name__,
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(errors.is_retryable),
        reraise=True,
        sleep=policy.sleep,
        before_sleep=before_sleep,
    )
    try:
        return retrying(attempt)
    except VmkitError:
        raise
    except Exception as exc:
        raise errors.translate(exc, operation) from exc


def fallback_error(
    exc: BaseException,
    operation: str,
    *,
    provider: str,
    service: str,
    retryable: bool,
    from_sdk: bool = False,
) -> ProviderError:
    """The error for an SDK exception no rule of a backend's ErrorMap matched.

    A retryable failure that outlasted the retries could not reach
    ``service``: only its type is reported, since connection errors may quote
    URLs and headers. An error of the SDK's own (``from_sdk``) keeps its
    message; anything else is reported as unexpected, with its type.
    """
    if retryable:
        message = f"{operation}: cannot reach {service}: {type(exc).__name__}"
    elif from_sdk:
        message = f"{operation}: {exc}"
    else:
        message = f"{operation}: unexpected {type(exc).__name__}: {exc}"
    return ProviderError(message, provider=provider, operation=operation)
