"""The shared retry policy: bounded, jittered, honouring Retry-After."""

from __future__ import annotations

import time

import pytest

import vmkit
from vmkit.errors import VmkitError
from vmkit.retry import RetryPolicy, call_with_retry


class Slow(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


class Errors:
    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, Slow)

    def retry_after(self, exc: BaseException) -> float | None:
        return getattr(exc, "retry_after", None)

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        if isinstance(exc, Slow):
            return vmkit.Throttled(f"{operation}: throttled", operation=operation)
        return vmkit.ProviderError(f"{operation}: {exc}", operation=operation)


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_retries_until_success() -> None:
    sleeps: list[float] = []
    fn = Flaky([Slow(), Slow()])
    policy = RetryPolicy(attempts=5, sleep=sleeps.append)
    assert call_with_retry(policy, Errors(), "op", fn) == "ok"
    assert fn.calls == 3
    assert len(sleeps) == 2


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jitter spreads over the whole range


def test_retry_after_is_the_minimum_wait() -> None:
    sleeps: list[float] = []
    fn = Flaky([Slow(retry_after=3.0)])
    call_with_retry(RetryPolicy(sleep=sleeps.append, timeout=60), Errors(), "op", fn)
    assert sleeps[0] >= 3.0


def test_attempts_bound_the_retries_and_the_error_is_translated() -> None:
    fn = Flaky([Slow() for _ in range(10)])
    with pytest.raises(vmkit.Throttled) as info:
        call_with_retry(RetryPolicy(attempts=4, sleep=lambda _: None), Errors(), "op", fn)
    assert fn.calls == 4
    assert isinstance(info.value.__cause__, Slow)


def test_the_time_budget_stops_before_a_wait_that_would_pass_it() -> None:
    fn = Flaky([Slow(retry_after=30.0) for _ in range(10)])
    started = time.monotonic()
    with pytest.raises(vmkit.Throttled):
        call_with_retry(RetryPolicy(attempts=100, timeout=5.0), Errors(), "op", fn)
    assert fn.calls == 1
    assert time.monotonic() - started < 1.0


def test_non_retryable_errors_are_not_retried() -> None:
    fn = Flaky([KeyError("nope")])
    with pytest.raises(vmkit.ProviderError, match="op: 'nope'") as info:
        call_with_retry(RetryPolicy(sleep=lambda _: None), Errors(), "op", fn)
    assert fn.calls == 1
    assert isinstance(info.value.__cause__, KeyError)


def test_vmkit_errors_pass_through_untouched() -> None:
    fn = Flaky([vmkit.NotFound("gone")])
    with pytest.raises(vmkit.NotFound, match="gone"):
        call_with_retry(RetryPolicy(), Errors(), "op", fn)


@pytest.mark.parametrize(("attempts", "timeout"), [(0, 10.0), (3, -1.0)])
def test_bad_bounds_are_config_errors(attempts: int, timeout: float) -> None:
    with pytest.raises(vmkit.ConfigError):
        RetryPolicy(attempts=attempts, timeout=timeout)
