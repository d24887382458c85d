"""The in-process GCRA (store.ratelimit.LocalGcra) with an injected clock."""

from __future__ import annotations

import pytest

from store.ratelimit import LocalGcra
from tests.support.clock import FakeClock


def test_burst_then_one_unit_per_interval(clock: FakeClock) -> None:
    gcra = LocalGcra(clock=clock)
    results = [gcra.check("k", limit=3, period=1.0) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert results[3].retry_after == pytest.approx(1 / 3)
    assert results[3].reset_after == pytest.approx(1.0)
    clock.advance(1 / 3 - 0.01)
    assert not gcra.check("k", limit=3, period=1.0).allowed
    clock.advance(0.01)
    assert gcra.check("k", limit=3, period=1.0).allowed
    assert not gcra.check("k", limit=3, period=1.0).allowed


def test_a_full_period_refills_the_bucket(clock: FakeClock) -> None:
    gcra = LocalGcra(clock=clock)
    for _ in range(5):
        gcra.check("k", limit=5, period=10)
    clock.advance(10)
    result = gcra.check("k", limit=5, period=10)
    assert (result.allowed, result.remaining) == (True, 4)
    clock.advance(3600)  # idle time does not bank extra units
    assert [gcra.check("k", limit=5, period=10).allowed for _ in range(6)] == [True] * 5 + [False]


def test_partial_refill(clock: FakeClock) -> None:
    gcra = LocalGcra(clock=clock)
    for _ in range(4):
        gcra.check("k", limit=4, period=8)
    clock.advance(4)  # two units back
    assert gcra.check("k", limit=4, period=8).remaining == 1


def test_cost(clock: FakeClock) -> None:
    gcra = LocalGcra(clock=clock)
    assert gcra.check("k", limit=10, period=60, cost=7).remaining == 3
    refused = gcra.check("k", limit=10, period=60, cost=4)
    assert (refused.allowed, refused.remaining) == (False, 3)
    assert refused.retry_after == pytest.approx(6.0)
    assert gcra.check("k", limit=10, period=60, cost=3).allowed


def test_refusals_charge_nothing(clock: FakeClock) -> None:
    gcra = LocalGcra(clock=clock)
    gcra.check("k", limit=1, period=10)
    for _ in range(100):
        assert not gcra.check("k", limit=1, period=10).allowed
    clock.advance(10)
    assert gcra.check("k", limit=1, period=10).allowed


def test_keys_are_bounded_least_recently_used_first(clock: FakeClock) -> None:
    gcra = LocalGcra(max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        gcra.check(key, limit=1, period=60)
    assert not gcra.check("a", limit=1, period=60).allowed  # "a" is now the most recent
    gcra.check("d", limit=1, period=60)  # evicts "b", the least recently used
    assert len(gcra) == 3
    assert not gcra.check("a", limit=1, period=60).allowed
    assert not gcra.check("c", limit=1, period=60).allowed
    assert gcra.check("b", limit=1, period=60).allowed  # forgotten: a fresh bucket


def test_default_bound_is_ten_thousand(clock: FakeClock) -> None:
    gcra = LocalGcra(clock=clock)
    for n in range(10_050):
        gcra.check(str(n), limit=1, period=60)
    assert len(gcra) == 10_000


def test_arguments_are_validated(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        LocalGcra(max_keys=0)
    gcra = LocalGcra(clock=clock)
    with pytest.raises(ValueError):
        gcra.check("k", limit=2, period=60, cost=3)
    with pytest.raises(ValueError):
        gcra.check("k", limit=1, period=-1)
