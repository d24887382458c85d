"""RateLimiter on the real Redis: shared counts, metrics, headers, and the per-process fallback
when Redis is down or frozen (through a fault proxy; the shared server is never stopped)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from smartpip.http.ratelimit import Decision, Policy, RateLimiter
from store.redis import RedisStore
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy, Traffic
from tests.support.polling import eventually
from tests.support.redistimeouts import backoff_errors, ended_by_a_timeout

# A hang guard, not a speed check: several times the store's timeouts (0.5 s connect + 0.25 s
# command). What ended a wait is read from the error; speed is the benchmark's business.
HANG_GUARD = 10.0
CLIENT = "203.0.113.7"


def decisions(registry: CollectorRegistry, policy: str, outcome: str, backend: str) -> float:
    labels = {"policy": policy, "outcome": outcome, "backend": backend}
    return registry.get_sample_value("rate_limit_decisions_total", labels) or 0.0


def is_degraded(limiter: RateLimiter) -> bool:
    # A function, not the property inline: mypy would keep the property narrowed across awaits.
    return limiter.degraded


async def run(limiter: RateLimiter, policy: Policy, n: int, key: str = CLIENT) -> list[Decision]:
    return [await limiter.check(policy, key) for _ in range(n)]


async def test_limits_through_redis_with_metrics(redis_store: RedisStore) -> None:
    registry = CollectorRegistry()
    limiter = RateLimiter(redis_store, registry)
    policy = Policy("suggest", 3, 60)
    results = await run(limiter, policy, 4)
    assert [d.allowed for d in results] == [True, True, True, False]
    assert [d.remaining for d in results] == [2, 1, 0, 0]
    assert not any(d.degraded for d in results)
    assert results[0].retry_after == 0
    assert results[3].retry_after == 20  # one request back every 60/3 s
    assert results[3].reset == 60
    assert results[3].headers() == {
        "RateLimit-Policy": '"suggest";q=3;w=60',
        "RateLimit": '"suggest";r=0;t=60',
        "Retry-After": "20",
    }
    assert decisions(registry, "suggest", "allowed", "redis") == 3
    assert decisions(registry, "suggest", "limited", "redis") == 1
    assert decisions(registry, "suggest", "allowed", "local") == 0
    # Another client has its own bucket.
    assert (await limiter.check(policy, "198.51.100.1")).allowed


async def test_allowed_again_after_retry_after(redis_store: RedisStore) -> None:
    limiter = RateLimiter(redis_store, CollectorRegistry())
    policy = Policy("burst", 2, 1)
    assert [d.allowed for d in await run(limiter, policy, 2)] == [True, True]
    refused = await limiter.check(policy, CLIENT)
    assert not refused.allowed
    assert refused.retry_after == 1  # 0.5 s, rounded up to whole seconds
    last_refused = started = trio.current_time()  # after Redis decided the refusal

    async def allowed() -> bool:
        nonlocal last_refused
        sent = trio.current_time()  # before Redis decides this one
        if (await limiter.check(policy, CLIENT)).allowed:
            return True
        last_refused = sent
        return False

    await eventually(allowed)
    # Redis never refuses once Retry-After has passed. Measured so that a slow test run can
    # only shrink the difference (each check is decided after it was sent, the first refusal
    # before ``started``): no flake under load, unlike timing when the answer arrives.
    assert last_refused - started < refused.retry_after


async def test_two_replicas_share_the_limit(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    replicas = [
        RateLimiter(redis_store, CollectorRegistry()),
        RateLimiter(replica_store, CollectorRegistry()),
    ]
    policy = Policy("login", 10, 60)
    outcomes: list[bool] = []

    async def one(limiter: RateLimiter) -> None:
        outcomes.append((await limiter.check(policy, CLIENT)).allowed)

    async with trio.open_nursery() as nursery:
        for n in range(25):
            nursery.start_soon(one, replicas[n % 2])
    assert outcomes.count(True) == 10  # the same total one replica allows
    assert not (await replicas[0].check(policy, CLIENT)).allowed
    assert not (await replicas[1].check(policy, CLIENT)).allowed


async def test_redis_keys_hold_no_raw_address(redis_store: RedisStore) -> None:
    limiter = RateLimiter(redis_store, CollectorRegistry())
    await limiter.check(Policy("suggest", 3, 60), CLIENT)
    with redis_store.fail_fast():  # iterate every SCAN page: the shared Redis holds other keys
        keys = [k async for k in redis_store.client.scan_iter(match=redis_store.prefix + "*")]
    assert len(keys) == 1
    key = keys[0].decode()
    assert key.startswith(redis_store.key("rl", "lease", "suggest:"))
    assert CLIENT not in key
    assert 0 < await redis_store.call(redis_store.client.pttl, key) <= 20_000


async def test_redis_down_falls_back_then_returns(
    patient_store: RedisStore,
    redis_proxy: FaultProxy,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    limiter = RateLimiter(patient_store, registry, clock=clock)
    policy = Policy("history", 8, 60)  # local limit: 2
    assert not (await limiter.check(policy, "warm-up")).degraded
    redis_proxy.mode = "down"
    with trio.fail_after(HANG_GUARD):
        first = await limiter.check(policy, CLIENT)
    assert first.degraded and first.allowed and is_degraded(limiter)
    # Failed fast: on the reset itself, not by waiting out a timeout.
    errors = backoff_errors(caplog.records)
    assert errors and not ended_by_a_timeout(errors[0], patient_store.settings), errors
    # Backed off: the next checks do not even dial Redis.
    with redis_proxy.record() as asked:
        results = [first, *await run(limiter, policy, 2)]
    assert asked == Traffic(), f"Redis was asked during the back-off: {asked}"
    assert [d.allowed for d in results] == [True, True, False]
    assert all(d.degraded for d in results)
    assert results[2].headers()["RateLimit-Policy"] == '"history";q=2;w=60'
    assert results[2].retry_after == 30  # the local limit refills one every 60/2 s
    assert decisions(registry, "history", "allowed", "local") == 2
    assert decisions(registry, "history", "limited", "local") == 1

    redis_proxy.mode = "pass"
    clock.advance(1.0)  # the back-off is over: the next check probes Redis again
    with trio.fail_after(HANG_GUARD):
        back = await limiter.check(policy, CLIENT)
    assert not back.degraded and not is_degraded(limiter)
    assert (back.allowed, back.remaining) == (True, 7)  # Redis never saw the local requests
    assert decisions(registry, "history", "allowed", "redis") == 2


async def test_redis_hung_answers_within_the_timeout(
    proxied_store: RedisStore,
    redis_proxy: FaultProxy,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RateLimiter(proxied_store, CollectorRegistry(), clock=clock)
    policy = Policy("history", 8, 60)
    assert not (await limiter.check(policy, "warm-up")).degraded
    redis_proxy.mode = "hung"
    with trio.fail_after(HANG_GUARD):
        first = await limiter.check(policy, CLIENT)
    assert first.degraded and first.allowed
    # Nothing but a timeout could end the wait on the frozen Redis: the store's own did.
    errors = backoff_errors(caplog.records)
    assert errors and ended_by_a_timeout(errors[0], proxied_store.settings), errors
    # During the back-off Redis is not asked at all (counted at the proxy, which receives
    # what is sent to a frozen server too): no command, no new connection.
    with redis_proxy.record() as asked:
        rest = await run(limiter, policy, 10)
    assert asked == Traffic(), f"Redis was asked during the back-off: {asked}"
    assert all(d.degraded for d in rest)
    assert [d.allowed for d in rest] == [True] + [False] * 9

    redis_proxy.mode = "pass"  # held bytes (the stale reply) are delivered now

    async def on_redis_again() -> bool:
        clock.advance(1.0)
        return not (await limiter.check(policy, "fresh")).degraded

    await eventually(on_redis_again)
    # The connection is in sync after the stale reply: a fresh bucket counts down correctly.
    assert [d.remaining for d in await run(limiter, policy, 3, "fresher")] == [7, 6, 5]


async def test_one_probe_at_a_time_after_the_backoff(
    proxied_store: RedisStore, redis_proxy: FaultProxy, clock: FakeClock
) -> None:
    limiter = RateLimiter(proxied_store, CollectorRegistry(), clock=clock)
    policy = Policy("history", 8, 60)
    assert not (await limiter.check(policy, "warm-up")).degraded
    redis_proxy.mode = "hung"
    assert (await limiter.check(policy, CLIENT)).degraded
    clock.advance(1.0)
    done: list[Decision] = []

    async def one() -> None:
        done.append(await limiter.check(policy, CLIENT))

    with redis_proxy.record() as asked, trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert len(done) == 4  # the probe alone waits for the frozen Redis
    assert len(done) == 5 and all(d.degraded for d in done)
    assert asked.commands == ["EVALSHA"], asked  # one probe asked Redis, the others did not
