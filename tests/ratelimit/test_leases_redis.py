"""Leases from the shared buckets on the real Redis (store.ratelease.RedisLeases), and two
RateLimiters (two replicas) sharing one real Redis prefix through their leases."""

from __future__ import annotations

import math

import pytest
import trio
import trio.lowlevel
from prometheus_client import CollectorRegistry

from smartpip.http.ratelimit import Policy, RateLimiter
from store.ratelease import MAX_BATCH, LeaseRequest, MemoryLeases, RedisLeases
from store.redis import RedisStore
from tests.support.clock import FakeClock

CLIENT = "user:7"


async def test_a_lease_grants_what_is_available_then_refuses(redis_store: RedisStore) -> None:
    leases = RedisLeases(redis_store)
    [first] = await leases.lease([LeaseRequest("b", 10, 60, 4)])
    assert (first.granted, first.remaining, first.retry_after) == (4, 6, 0)
    assert 23.0 < first.reset_after <= 24.0  # four units, 6 s each
    [second] = await leases.lease([LeaseRequest("b", 10, 60, 8)])
    assert (second.granted, second.remaining) == (6, 0)  # only six were left
    assert second.version > first.version
    [refused] = await leases.lease([LeaseRequest("b", 10, 60, 1)])
    assert (refused.granted, refused.remaining) == (0, 0)
    assert 5.0 < refused.retry_after <= 6.0
    assert refused.version == second.version  # nothing written


async def test_a_refund_is_taken_back_only_if_nobody_touched_the_bucket(
    redis_store: RedisStore,
) -> None:
    leases = RedisLeases(redis_store)
    [mine] = await leases.lease([LeaseRequest("r", 10, 60, 5)])
    # Nobody else since: 3 units back, exactly as if they had never been leased.
    [again] = await leases.lease([LeaseRequest("r", 10, 60, 0, refund=3, version=mine.version)])
    assert (again.granted, again.remaining) == (0, 8)
    # Someone else leased since: a refund naming the old version is ignored.
    [other] = await leases.lease([LeaseRequest("r", 10, 60, 1)])
    assert other.remaining == 7
    [stale] = await leases.lease([LeaseRequest("r", 10, 60, 0, refund=2, version=again.version)])
    assert stale.remaining == 7
    # Giving everything back empties the bucket: the key is gone (Redis holds nothing idle).
    [last] = await leases.lease([LeaseRequest("r", 10, 60, 0, refund=3, version=other.version)])
    assert last.remaining == 10
    assert (
        await redis_store.call(redis_store.client.exists, [redis_store.key("rl", "lease", "r")])
        == 0
    )


async def test_one_batch_serves_many_buckets_and_matches_the_python_twin(
    redis_store: RedisStore,
) -> None:
    leases = RedisLeases(redis_store)
    twin = MemoryLeases(FakeClock(0.0))
    requests = [LeaseRequest(f"k{n}", 20, 60, 1 + n % 7) for n in range(MAX_BATCH + 10)]
    for _ in range(4):  # enough rounds to exhaust some buckets
        got = await leases.lease(requests)
        want = await twin.lease(requests)
        assert [(g.granted, g.remaining) for g in got] == [(w.granted, w.remaining) for w in want]


async def test_two_replicas_on_one_redis_keep_the_shared_limit(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    """Two limiters on two connections to one Redis prefix (two replicas), settling as their
    loops would, with a client hammering both: the total admitted stays within one GCRA bucket
    plus the documented bound, and costs far fewer Redis commands than requests."""
    registries = [CollectorRegistry(), CollectorRegistry()]
    replicas = [
        RateLimiter(redis_store, registries[0], settle_interval=0.05),
        RateLimiter(replica_store, registries[1], settle_interval=0.05),
    ]
    policy = Policy("history", 1000, 3600)  # refills one unit every 3.6 s; leases up to 62
    bound = min(2 * RateLimiter.max_lease(policy), math.ceil(replicas[0].lease_ttl * 1000 / 3600))
    assert bound == 1
    started = trio.current_time()
    allowed = 0

    async def client(rl: RateLimiter) -> None:
        nonlocal allowed
        for n in range(750):
            if (await rl.check(policy, CLIENT)).allowed:
                allowed += 1
            if n % 25 == 0:
                await rl.settle()
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for rl in replicas:
            nursery.start_soon(client, rl)
    elapsed = trio.current_time() - started
    # One bucket admits the burst of 1000 plus what refilled meanwhile; leases add <= bound.
    assert allowed <= policy.limit + math.floor(elapsed / 3.6) + bound
    # Units a replica could not give back (the other touched the bucket) are lost: a few leases.
    assert allowed >= policy.limit - 4 * RateLimiter.max_lease(policy)
    leases = sum(
        r.get_sample_value("rate_limit_leases_total", {"via": via}) or 0.0
        for r in registries
        for via in ("inline", "settle")
    )
    # Leased ahead while the bucket had half its capacity left, one unit each past that.
    assert leases < 1500 / 2


@pytest.mark.parametrize("want", [0, 11])
def test_a_request_out_of_range_is_refused(want: int) -> None:
    with pytest.raises(ValueError, match="want"):
        LeaseRequest("k", 10, 60, want if want else -1)
