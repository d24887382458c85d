"""QuotaGate: budget, quotaExceeded, upstream failures with one probe, key invalid, Redis down."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

from smartpip.suggest.quota import QuotaGate, Refusal, Reservation
from store.quota import quota_usage
from store.quota_breaker import breaker_state, open_breaker
from store.redis import RedisStore
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy, Traffic
from tests.support.polling import eventually
from tests.support.redistimeouts import backoff_errors, ended_by_a_timeout

# 2024-03-10 20:00 PDT (the 23-hour spring-forward day): 4 h to midnight Pacific.
EVENING = datetime(2024, 3, 11, 3, 0, tzinfo=UTC).timestamp()
TO_MIDNIGHT = 4 * 3600
# A hang guard, not a speed check: several times the store's timeouts (0.5 s connect + 0.25 s
# command). What ended a wait is read from the error; speed is the benchmark's business.
HANG_GUARD = 10


def gate(store: RedisStore, clock: FakeClock, **kw: Any) -> QuotaGate:
    return QuotaGate(store, clock=clock, monotonic=clock, **kw)


async def wait_for_half_open(store: RedisStore, half_open_seconds: int) -> None:
    """Poll the breaker until its cool-down is over: its TTL runs in Redis, in real time.

    Reading the state is side-effect free (unlike ``reserve``, which would take the probe).
    """

    async def cooled_down() -> bool:
        state = await breaker_state(store)
        assert state is not None and state.reason == "upstream", state
        return state.seconds_remaining <= half_open_seconds

    await eventually(cooled_down, within=10)


async def test_budget_shared_then_refused_until_midnight(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    clock = FakeClock(EVENING)
    a, b = gate(redis_store, clock, daily_budget=3), gate(replica_store, clock, daily_budget=3)
    results = [await g.reserve() for g in (a, b, a)]
    assert [r.searches for r in results if isinstance(r, Reservation)] == [1, 2, 3]
    assert all(isinstance(r, Reservation) and r.day == "2024-03-10" for r in results)
    assert await b.reserve() == Refusal("quota", TO_MIDNIGHT)
    clock.advance(100)
    assert await a.reserve() == Refusal("quota", TO_MIDNIGHT - 100)
    state = await breaker_state(redis_store)
    assert state is not None and (state.reason, state.day) == ("quota", "2024-03-10")
    assert a.breaker_reason == "quota"
    # Midnight Pacific: a new day's counter, and yesterday's breaker no longer applies.
    clock.advance(TO_MIDNIGHT - 100)
    again = await b.reserve()
    assert isinstance(again, Reservation)
    assert (again.day, again.searches, again.remaining) == ("2024-03-11", 1, 2)
    assert b.breaker_reason is None


async def test_quota_exceeded_opens_until_midnight(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    clock = FakeClock(EVENING)
    a, b = gate(redis_store, clock), gate(replica_store, clock)
    assert isinstance(await a.reserve(), Reservation)
    await a.quota_exceeded()
    clock.advance(3600)
    assert await b.reserve() == Refusal("quota", TO_MIDNIGHT - 3600)
    assert (await quota_usage(redis_store, "2024-03-10")).searches == 1  # nothing counted
    clock.advance(TO_MIDNIGHT - 3600 + 1)
    assert isinstance(await b.reserve(), Reservation)


async def test_units_are_counted(redis_store: RedisStore) -> None:
    clock = FakeClock(EVENING)
    g = gate(redis_store, clock)
    await g.reserve()
    await g.add_units(1)
    usage = await g.usage()
    assert usage is not None and (usage.searches, usage.units) == (1, 101)


async def test_consecutive_failures_cool_down_then_one_probe(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    clock = FakeClock(EVENING)
    kw = {"failure_threshold": 3, "cooldown_seconds": 1, "half_open_seconds": 30}
    a, b = gate(redis_store, clock, **kw), gate(replica_store, clock, **kw)
    await a.upstream_failed()
    await a.upstream_succeeded()  # not in a row any more
    await a.upstream_failed()
    await a.upstream_failed()
    assert isinstance(await b.reserve(), Reservation)
    await a.upstream_failed()  # the third in a row
    refused = await b.reserve()
    assert refused == Refusal("upstream", 1)
    # The breaker's TTL is Redis time: wait out the 1 s cool-down for real.
    await wait_for_half_open(redis_store, kw["half_open_seconds"])
    first, second = await a.reserve(), await b.reserve()
    assert isinstance(first, Reservation) and first.probe
    assert second == Refusal("upstream", 30)
    # The probe fails: fully open again, for everyone.
    await a.upstream_failed(probe=first.probe)
    assert await b.reserve() == Refusal("upstream", 1)
    await wait_for_half_open(redis_store, kw["half_open_seconds"])
    probe = await b.reserve()
    assert isinstance(probe, Reservation) and probe.probe
    await b.upstream_succeeded(probe=True)
    assert await breaker_state(redis_store) is None
    after = [await a.reserve(), await b.reserve()]
    assert all(isinstance(r, Reservation) and not r.probe for r in after)


async def test_failures_do_not_shorten_a_quota_breaker(redis_store: RedisStore) -> None:
    clock = FakeClock(EVENING)
    g = gate(redis_store, clock, failure_threshold=1)
    await g.quota_exceeded()
    await g.upstream_failed()
    state = await breaker_state(redis_store)
    assert state is not None and state.reason == "quota"


async def test_yesterdays_quota_breaker_does_not_stop_todays_upstream_breaker(
    redis_store: RedisStore,
) -> None:
    clock = FakeClock(EVENING)
    g = gate(redis_store, clock, failure_threshold=1)
    await g.quota_exceeded()
    clock.advance(TO_MIDNIGHT + 1)  # this clock is past midnight; the Redis key still lives
    await g.upstream_failed()
    state = await breaker_state(redis_store)
    assert state is not None and state.reason == "upstream"


async def test_key_invalid_is_down_and_visible(
    redis_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(EVENING)
    g = gate(redis_store, clock, key_invalid_seconds=3600)
    with caplog.at_level(logging.WARNING):
        await g.key_invalid()
    assert any(r.levelno == logging.WARNING and "API key" in r.getMessage() for r in caplog.records)
    assert g.breaker_reason == "key_invalid"
    assert await g.reserve() == Refusal("key_invalid", 3600)
    assert (await quota_usage(redis_store, "2024-03-10")).searches == 0


async def test_foreign_breaker_reasons_are_honoured(redis_store: RedisStore) -> None:
    await open_breaker(redis_store, "key_invalid", 50)
    g = gate(redis_store, FakeClock(EVENING))
    assert await g.reserve() == Refusal("key_invalid", 50)
    assert g.breaker_reason == "key_invalid"


async def test_redis_down_allows_a_local_allowance(
    proxied_store: RedisStore, redis_proxy: FaultProxy
) -> None:
    clock = FakeClock(EVENING)
    g = gate(proxied_store, clock, daily_budget=100, redis_down_budget=2)
    assert isinstance(await g.reserve(), Reservation)
    redis_proxy.mode = "down"
    with trio.fail_after(HANG_GUARD):
        results = [await g.reserve()]  # meets the reset: the local allowance, and a back-off
        # Backed off: the rest is answered in this process, Redis not even dialled; breakers
        # opened while Redis is away hold locally; the reports never raise.
        with redis_proxy.record() as asked:
            results += [await g.reserve() for _ in range(2)]
            await g.quota_exceeded()
            await g.add_units(1)
            assert await g.usage() is None
            assert await g.reserve() == Refusal("quota", TO_MIDNIGHT)
    assert asked == Traffic(), f"Redis was asked during the back-off: {asked}"
    assert g.redis_down
    assert [isinstance(r, Reservation) and not r.shared for r in results[:2]] == [True, True]
    assert results[2] == Refusal("redis", 60)
    # A new day (and Redis back after the back-off): shared counting again.
    redis_proxy.mode = "pass"
    clock.advance(TO_MIDNIGHT)
    with trio.fail_after(HANG_GUARD):
        back = await g.reserve()
    assert isinstance(back, Reservation) and back.shared
    assert not g.redis_down


async def test_redis_hung_answers_within_the_timeout(
    proxied_store: RedisStore, redis_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(EVENING)
    g = gate(proxied_store, clock, redis_down_budget=1)
    assert isinstance(await g.reserve(), Reservation)
    redis_proxy.mode = "hung"
    with trio.fail_after(HANG_GUARD):
        first = await g.reserve()
    assert isinstance(first, Reservation) and not first.shared
    # Nothing but a timeout could end the wait on the frozen Redis: the store's own did.
    errors = backoff_errors(caplog.records)
    assert errors and ended_by_a_timeout(errors[0], proxied_store.settings), errors
    # Backed off: Redis is not asked (counted at the proxy, which receives what is sent to a
    # frozen server too): no command, no new connection.
    with redis_proxy.record() as asked:
        assert await g.reserve() == Refusal("redis", 60)
        await g.upstream_failed()
        await g.add_units(1)
        assert await g.usage() is None
    assert asked == Traffic(), f"Redis was asked during the back-off: {asked}"


async def test_keep_refuses_within_the_reserve_without_opening_the_breaker(
    redis_store: RedisStore,
) -> None:
    clock = FakeClock(EVENING)
    a = gate(redis_store, clock, daily_budget=3)
    assert isinstance(await a.reserve(keep=1), Reservation)
    assert isinstance(await a.reserve(keep=1), Reservation)
    # One search left: it fits, but not with one more kept.
    assert await a.reserve(keep=1) == Refusal("reserve", TO_MIDNIGHT)
    assert await breaker_state(redis_store) is None
    assert (await quota_usage(redis_store, "2024-03-10")).searches == 2  # nothing counted
    last = await a.reserve()
    assert isinstance(last, Reservation) and last.remaining == 0
    # Spent: the ordinary quota refusal, breaker and all, whatever is kept.
    assert await a.reserve(keep=1) == Refusal("quota", TO_MIDNIGHT)
    assert await breaker_state(redis_store) is not None
    with pytest.raises(ValueError):
        await a.reserve(keep=-1)
