"""The shared fault model: counts, rates with a seed, and which faults combine."""

from __future__ import annotations

from vmkit.testing.faults import FaultPlan


def test_counted_rules_fire_that_many_times_on_matching_requests() -> None:
    plan = FaultPlan()
    plan.fail(429, count=2, method="POST", path="/pods$", retry_after=1)
    assert plan.decide("GET", "/api/v1/pods").status is None
    first, second, third = (plan.decide("POST", "/api/v1/pods") for _ in range(3))
    assert (first.status, first.retry_after) == (429, 1)
    assert second.status == 429
    assert third.status is None


def test_rates_are_replayable_with_the_same_seed() -> None:
    def run(seed: int) -> list[bool]:
        plan = FaultPlan(seed=seed)
        plan.fail(503, count=None, rate=0.3)
        return [plan.decide("GET", "/x").status is not None for _ in range(200)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert 30 < sum(run(7)) < 90


def test_a_failed_request_is_not_also_dropped_and_the_drop_waits_for_one_that_commits() -> None:
    plan = FaultPlan()
    plan.drop_responses(count=1, method="POST")
    plan.fail(503, count=1)
    failed = plan.decide("POST", "/create")
    assert (failed.status, failed.drop_response) == (503, False)
    committed = plan.decide("POST", "/create")
    assert (committed.status, committed.drop_response) == (None, True)
    assert plan.decide("POST", "/create").drop_response is False


def test_latency_adds_up_and_combines_with_other_faults() -> None:
    plan = FaultPlan()
    plan.delay(0.1)
    plan.delay(0.2, count=1)
    plan.reset(count=1)
    decision = plan.decide("GET", "/x")
    assert decision.reset
    assert abs(decision.latency - 0.3) < 1e-9
    assert plan.decide("GET", "/x").latency == 0.1


def test_each_loses_the_first_answer_of_every_distinct_request_once() -> None:
    plan = FaultPlan()
    rule = plan.drop_responses(count=None, each=True, path="/pods$")
    first = [plan.decide("POST", "/pods", key=f"pod-{i}").drop_response for i in range(3)]
    retries = [plan.decide("POST", "/pods", key=f"pod-{i}").drop_response for i in range(3)]
    assert first == [True, True, True]
    assert retries == [False, False, False]
    assert rule.fired == 3
    assert plan.decide("GET", "/pods", key="list").drop_response is False
