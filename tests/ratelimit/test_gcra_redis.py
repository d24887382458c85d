"""GCRA in Redis (store.ratelimit.gcra_check) on the real server, under a private prefix."""

from __future__ import annotations

import logging
import uuid

import pytest
import trio
from coredis.commands import Script

from store.ratelimit import GCRA_LUA, LocalGcra, _run_gcra, gcra_check
from store.redis import RedisStore, RedisUnavailable
from tests.support.clock import FakeClock
from tests.support.polling import eventually


async def burst(store: RedisStore, key: str, n: int, *, limit: int, period: float) -> list[bool]:
    return [(await gcra_check(store, key, limit=limit, period=period)).allowed for _ in range(n)]


async def test_a_burst_of_exactly_limit_then_refused(redis_store: RedisStore) -> None:
    results = [await gcra_check(redis_store, "b", limit=5, period=60) for _ in range(5)]
    assert [r.allowed for r in results] == [True] * 5
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0]
    assert all(r.retry_after == 0 for r in results)
    refused = await gcra_check(redis_store, "b", limit=5, period=60)
    assert not refused.allowed
    assert refused.remaining == 0
    # One unit comes back every period/limit = 12 s; the burst took far less than a second.
    assert 11.0 < refused.retry_after <= 12.0
    assert 59.0 < refused.reset_after <= 60.0


async def test_allowed_again_after_retry_after(redis_store: RedisStore) -> None:
    assert await burst(redis_store, "w", 2, limit=2, period=1.0) == [True, True]
    started = trio.current_time()  # before Redis decides the refusal
    refused = await gcra_check(redis_store, "w", limit=2, period=1.0)
    assert not refused.allowed
    assert 0.3 < refused.retry_after <= 0.5

    async def allowed() -> bool:
        return (await gcra_check(redis_store, "w", limit=2, period=1.0)).allowed

    # Refused checks charge nothing, so polling does not push the answer later.
    await eventually(allowed)
    # Not allowed before Retry-After. Measured so that a slow test run can only lengthen the
    # difference (the refusal is decided after ``started``, the allowance before it returned);
    # Redis' clock and ours may differ by NTP slewing, not more.
    assert trio.current_time() - started >= refused.retry_after - 0.02


async def test_cost_takes_several_units(redis_store: RedisStore) -> None:
    first = await gcra_check(redis_store, "c", limit=10, period=60, cost=4)
    assert (first.allowed, first.remaining) == (True, 6)
    second = await gcra_check(redis_store, "c", limit=10, period=60, cost=4)
    assert (second.allowed, second.remaining) == (True, 2)
    third = await gcra_check(redis_store, "c", limit=10, period=60, cost=4)
    assert (third.allowed, third.remaining) == (False, 2)
    assert 11.0 < third.retry_after <= 12.0  # two more units, 6 s each
    assert (await gcra_check(redis_store, "c", limit=10, period=60, cost=2)).allowed


async def test_bucket_key_is_prefixed_and_expires(redis_store: RedisStore) -> None:
    result = await gcra_check(redis_store, "p:k", limit=4, period=30)
    key = redis_store.key("rl", "p:k")
    assert key.startswith(redis_store.prefix)
    pttl = await redis_store.call(redis_store.client.pttl, key)
    # The TTL is the time until the bucket is full again: one unit spent = 30/4 s.
    assert 0 < pttl <= 7500
    assert pttl == pytest.approx(result.reset_after * 1000, abs=50)
    await burst(redis_store, "p:k", 3, limit=4, period=30)
    pttl = await redis_store.call(redis_store.client.pttl, key)
    assert 29_000 < pttl <= 30_000


async def test_a_refusal_does_not_extend_the_ttl(redis_store: RedisStore) -> None:
    await burst(redis_store, "r", 2, limit=2, period=30)
    key = redis_store.key("rl", "r")
    before = await redis_store.call(redis_store.client.pttl, key)
    assert not (await gcra_check(redis_store, "r", limit=2, period=30)).allowed
    after = await redis_store.call(redis_store.client.pttl, key)
    assert 0 < after <= before


async def test_buckets_are_independent(redis_store: RedisStore) -> None:
    assert await burst(redis_store, "x", 2, limit=1, period=60) == [True, False]
    assert await burst(redis_store, "y", 1, limit=1, period=60) == [True]


async def test_two_connections_share_one_count(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    outcomes: list[bool] = []

    async def one(store: RedisStore) -> None:
        outcomes.append((await gcra_check(store, "shared", limit=10, period=60)).allowed)

    async with trio.open_nursery() as nursery:
        for n in range(30):
            nursery.start_soon(one, redis_store if n % 2 else replica_store)
    assert outcomes.count(True) == 10


async def test_redis_and_local_agree(redis_store: RedisStore) -> None:
    local = LocalGcra(clock=FakeClock())
    for cost in (1, 3, 2, 2, 1, 5):
        remote = await gcra_check(redis_store, "twin", limit=8, period=60, cost=cost)
        here = local.check("twin", limit=8, period=60, cost=cost)
        assert (remote.allowed, remote.remaining) == (here.allowed, here.remaining)


async def test_script_is_loaded_on_noscript(
    redis_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A script body no server has seen: EVALSHA answers NOSCRIPT ("No matching script"),
    # coredis loads it and retries, inside the same fail_fast deadline. (One ~1 KB script
    # stays in the shared server's script cache per run; SCRIPT FLUSH would break other
    # users' scripts.)
    fresh: Script[bytes] = Script(script=GCRA_LUA + f"-- {uuid.uuid4().hex}\n")
    caplog.set_level(logging.INFO, logger="coredis")
    result = await _run_gcra(fresh, redis_store, "ns", limit=3, period=60, cost=1)
    assert (result.allowed, result.remaining) == (True, 2)
    assert any(
        "No matching script" in r.getMessage() for r in caplog.records if r.name == "coredis"
    )
    caplog.clear()
    again = await _run_gcra(fresh, redis_store, "ns", limit=3, period=60, cost=1)
    assert (again.allowed, again.remaining) == (True, 1)
    assert not any("No matching script" in r.getMessage() for r in caplog.records)


async def test_script_errors_become_unavailable(redis_store: RedisStore) -> None:
    key = redis_store.key("rl", "a-list")
    await redis_store.call(redis_store.client.rpush, key, ["x"])
    with pytest.raises(RedisUnavailable, match="refused the rate-limit script"):
        await gcra_check(redis_store, "a-list", limit=3, period=60)


@pytest.mark.parametrize(
    ("limit", "period", "cost"),
    [(0, 60, 1), (5, 0, 1), (5, float("inf"), 1), (5, 60, 0), (5, 60, 6), (100_000, 1, 1)],
)
async def test_arguments_are_validated(
    redis_store: RedisStore, limit: int, period: float, cost: int
) -> None:
    with pytest.raises(ValueError):
        await gcra_check(redis_store, "v", limit=limit, period=period, cost=cost)
