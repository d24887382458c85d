"""Unit tests for Backoff, RestartBudget and RestartPolicy (no trio needed)."""

from __future__ import annotations

import random

import pytest

from supervisors import Backoff, RestartBudget, RestartPolicy


def test_backoff_is_exponential_and_capped_without_jitter() -> None:
    backoff = Backoff(minimum=1.0, maximum=10.0, factor=2.0, jitter=0.0)
    rng = random.Random(0)
    delays = [backoff.delay(attempt, rng) for attempt in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert Backoff(jitter=0.0).delay(100_000, random.Random(0)) == 60.0


@pytest.mark.parametrize("jitter", [0.1, 0.5, 0.9])
def test_backoff_jitter_stays_in_bounds(jitter: float) -> None:
    backoff = Backoff(minimum=0.5, maximum=30.0, factor=3.0, jitter=jitter)
    seen: set[float] = set()
    for seed in range(300):
        rng = random.Random(seed)
        for attempt in range(1, 12):
            base = min(30.0, 0.5 * 3.0 ** (attempt - 1))
            delay = backoff.delay(attempt, rng)
            assert max(0.5 * (1 - jitter), base * (1 - jitter)) <= delay
            assert delay <= min(30.0, base * (1 + jitter))
            seen.add(delay)
    assert len(seen) > 1000  # the jitter really varies the delay


def test_backoff_same_seed_same_delays() -> None:
    backoff = Backoff()
    first = [backoff.delay(a, random.Random(42)) for a in range(1, 6)]
    assert first == [backoff.delay(a, random.Random(42)) for a in range(1, 6)]


def test_backoff_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        Backoff().delay(0, random.Random(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minimum": -1.0},
        {"minimum": 5.0, "maximum": 4.0},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_backoff_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"Backoff\."):
        Backoff(**kwargs)


def test_budget_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"RestartBudget\.max_restarts"):
        RestartBudget(max_restarts=-1)
    with pytest.raises(ValueError, match=r"RestartBudget\.window"):
        RestartBudget(window=0.0)


@pytest.mark.parametrize(
    ("policy", "after_error", "after_return"),
    [
        (RestartPolicy.PERMANENT, True, True),
        (RestartPolicy.TRANSIENT, True, False),
        (RestartPolicy.TEMPORARY, False, False),
    ],
)
def test_policy_restarts_after(
    policy: RestartPolicy, after_error: bool, after_return: bool
) -> None:
    assert policy.restarts_after(ValueError()) is after_error
    assert policy.restarts_after(None) is after_return
