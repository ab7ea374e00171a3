"""One fault model for every fake: error bursts, latency, resets, lost responses.

A :class:`FaultPlan` is consulted by a fake for each request. Rules match on
the HTTP method and a regular expression over the path, and either fire for
the next ``count`` matching requests or at a ``rate`` drawn from a seeded
random generator, so a failing run can be replayed with the same seed.

The worst fault is :meth:`FaultPlan.drop_responses`: the fake carries out the
request (the create commits) and then closes the connection without
answering, exactly what a client sees when a response is lost on the way.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Decision", "FaultPlan", "FaultRule"]

FaultKind = Literal["status", "reset", "latency", "drop"]


@dataclass
class FaultRule:
    """One rule. ``count`` None means unlimited; ``rate`` is a probability."""

    kind: FaultKind
    method: str | None = None
    path: re.Pattern[str] | None = None
    status: int = 503
    retry_after: float | None = None
    latency: float = 0.0
    count: int | None = None
    rate: float = 1.0
    each: bool = False
    fired: int = 0
    seen: set[str] = field(default_factory=set, repr=False)

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.method is not None and self.method != method.upper():
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass
class Decision:
    """What a fake does with one request."""

    status: int | None = None
    retry_after: float | None = None
    reset: bool = False
    latency: float = 0.0
    drop_response: bool = False
    rules: list[FaultRule] = field(default_factory=list)


class FaultPlan:
    """The faults a fake injects. Thread-safe; every fake takes one."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def _add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    @staticmethod
    def _pattern(path: str | None) -> re.Pattern[str] | None:
        return re.compile(path) if path is not None else None

    def fail(
        self,
        status: int = 503,
        *,
        count: int | None = 1,
        rate: float = 1.0,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> FaultRule:
        """Answer ``status`` (429, 500, 503...) instead of handling the request."""
        return self._add(
            FaultRule(
                "status",
                _upper(method),
                self._pattern(path),
                status=status,
                retry_after=retry_after,
                count=count,
                rate=rate,
            )
        )

    def reset(
        self,
        *,
        count: int | None = 1,
        rate: float = 1.0,
        method: str | None = None,
        path: str | None = None,
    ) -> FaultRule:
        """Reset the connection before handling the request (nothing commits)."""
        return self._add(
            FaultRule("reset", _upper(method), self._pattern(path), count=count, rate=rate)
        )

    def drop_responses(
        self,
        *,
        count: int | None = 1,
        rate: float = 1.0,
        method: str | None = "POST",
        path: str | None = None,
        each: bool = False,
    ) -> FaultRule:
        """Handle the request (it commits), then close without answering.

        With ``each``, the first answer of every distinct matching request
        is lost once and its retries are answered: "every create response
        is dropped once". Requests are told apart by the key the fake gives
        (method, path, query and a digest of the body, so a retry, which
        resends the same idempotency key, is the same request).
        """
        return self._add(
            FaultRule(
                "drop", _upper(method), self._pattern(path), count=count, rate=rate, each=each
            )
        )

    def delay(
        self,
        seconds: float,
        *,
        count: int | None = None,
        rate: float = 1.0,
        method: str | None = None,
        path: str | None = None,
    ) -> FaultRule:
        """Add ``seconds`` of latency before the answer."""
        return self._add(
            FaultRule(
                "latency",
                _upper(method),
                self._pattern(path),
                latency=seconds,
                count=count,
                rate=rate,
            )
        )

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def decide(self, method: str, path: str, key: str | None = None) -> Decision:
        """The faults for one request; counts down the rules that fire.

        ``key`` identifies the request for rules that fire once per distinct
        request (``each``); the method and path when not given.

        Errors and resets are decided first: a request that fails never
        reaches the handler, so a "drop the response" rule does not fire on
        it (and keeps its count for a request that does commit).
        """
        decision = Decision()
        with self._lock:
            for rule in sorted(self._rules, key=lambda r: r.kind == "drop"):
                if not rule.matches(method, path):
                    continue
                failed = decision.status is not None or decision.reset
                if rule.kind in ("status", "drop") and failed:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                if rule.each:
                    identity = key if key is not None else f"{method.upper()} {path}"
                    if identity in rule.seen:
                        continue
                    rule.seen.add(identity)
                if rule.count is not None:
                    rule.count -= 1
                rule.fired += 1
                decision.rules.append(rule)
                if rule.kind == "status":
                    decision.status, decision.retry_after = rule.status, rule.retry_after
                elif rule.kind == "reset":
                    decision.reset = True
                elif rule.kind == "latency":
                    decision.latency += rule.latency
                elif rule.kind == "drop":
                    decision.drop_response = True
        return decision


def _upper(method: str | None) -> str | None:
    return method.upper() if method else None
