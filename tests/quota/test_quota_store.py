"""The shared quota counter (store.quota), breaker and probe lock (store.quota_breaker),
against the real Redis."""

from __future__ import annotations

import pytest
import trio

from store.quota import (
    QUOTA_KEY_TTL_SECONDS,
    SEARCH_UNITS,
    UNIT_COSTS,
    QuotaUsage,
    add_units,
    add_units_if_counted,
    budget_units,
    quota_usage,
    reserve_search,
    reserve_search_if_counted,
    restore_usage,
    searches_left,
)
from store.quota_breaker import (
    BreakerState,
    breaker_state,
    close_breaker,
    end_probe,
    open_breaker,
    try_probe,
)
from store.redis import RedisStore
from tests.support.polling import eventually

DAY = "2024-03-10"


async def assert_every_key_has_ttl(store: RedisStore) -> None:
    keys = await store.call(store.client.keys, store.prefix + "*")
    assert keys
    for key in keys:
        assert await store.call(store.client.ttl, key) > 0, key


async def test_budget_is_shared_by_replicas(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    results = []
    for i in range(5):
        store = redis_store if i % 2 else replica_store
        results.append(await reserve_search(store, DAY, budget=budget_units(4)))
    assert [r.allowed for r in results] == [True, True, True, True, False]
    assert [r.searches for r in results] == [1, 2, 3, 4, 4]
    assert [r.remaining for r in results] == [3, 2, 1, 0, 0]
    # The refusal counted nothing.
    assert await quota_usage(redis_store, DAY) == await quota_usage(replica_store, DAY)
    usage = await quota_usage(redis_store, DAY)
    assert (usage.searches, usage.units) == (4, 400)


async def test_concurrent_reservations_allow_exactly_the_budget(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    allowed = 0

    async def one(store: RedisStore) -> None:
        nonlocal allowed
        if (await reserve_search(store, DAY, budget=budget_units(10))).allowed:
            allowed += 1

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, redis_store if i % 2 else replica_store)
    assert allowed == 10
    assert (await quota_usage(redis_store, DAY)).searches == 10


async def test_days_are_separate_and_keys_expire(redis_store: RedisStore) -> None:
    assert (await reserve_search(redis_store, DAY, budget=budget_units(1))).allowed
    assert not (await reserve_search(redis_store, DAY, budget=budget_units(1))).allowed
    assert (await reserve_search(redis_store, "2024-03-11", budget=budget_units(1))).allowed
    ttl = await redis_store.call(redis_store.client.ttl, redis_store.key("quota", DAY))
    assert QUOTA_KEY_TTL_SECONDS - 5 <= ttl <= QUOTA_KEY_TTL_SECONDS
    await assert_every_key_has_ttl(redis_store)


async def test_zero_budget_refuses_and_writes_nothing(redis_store: RedisStore) -> None:
    result = await reserve_search(redis_store, DAY, budget=budget_units(0))
    assert (result.allowed, result.searches, result.remaining) == (False, 0, 0)
    assert await redis_store.call(redis_store.client.keys, redis_store.prefix + "*") == set()


async def test_units_add_up(redis_store: RedisStore) -> None:
    assert await quota_usage(redis_store, DAY) == (await quota_usage(redis_store, "x"))
    assert (await quota_usage(redis_store, DAY)).units == 0
    await reserve_search(redis_store, DAY, budget=budget_units(5))
    assert await add_units(redis_store, DAY, 1) == 101
    assert await add_units(redis_store, DAY, 1, ttl_seconds=100) == 102
    usage = await quota_usage(redis_store, DAY)
    assert (usage.searches, usage.units) == (1, 102)
    ttl = await redis_store.call(redis_store.client.ttl, redis_store.key("quota", DAY))
    assert 0 < ttl <= 100


async def test_units_on_a_fresh_day_get_a_ttl(redis_store: RedisStore) -> None:
    await add_units(redis_store, DAY, 3)
    assert (await quota_usage(redis_store, DAY)).units == 3
    await assert_every_key_has_ttl(redis_store)


async def test_bad_arguments(redis_store: RedisStore) -> None:
    with pytest.raises(ValueError, match="budget"):
        await reserve_search(redis_store, DAY, budget=-1)
    with pytest.raises(ValueError, match="ttl"):
        await add_units(redis_store, DAY, 1, ttl_seconds=0)
    with pytest.raises(ValueError, match="reason"):
        await open_breaker(redis_store, "bored", 10)
    with pytest.raises(ValueError, match="seconds"):
        await open_breaker(redis_store, "quota", 0)
    with pytest.raises(ValueError, match="seconds"):
        await try_probe(redis_store, 0)


async def test_breaker_open_state_close(redis_store: RedisStore, replica_store: RedisStore) -> None:
    assert await breaker_state(redis_store) is None
    await open_breaker(redis_store, "upstream", 60)
    state = await breaker_state(replica_store)
    assert isinstance(state, BreakerState)
    assert state.reason == "upstream"
    assert 59 < state.seconds_remaining <= 60
    await assert_every_key_has_ttl(redis_store)
    # Closing for another reason leaves it open; the right reason (or none) closes it.
    assert not await close_breaker(replica_store, "quota")
    assert await breaker_state(redis_store) is not None
    assert await close_breaker(replica_store, "upstream")
    assert await breaker_state(redis_store) is None
    assert not await close_breaker(redis_store)
    await open_breaker(redis_store, "key_invalid", 3600)
    assert await close_breaker(redis_store)
    assert await breaker_state(redis_store) is None


async def test_breaker_is_replaced_and_expires(redis_store: RedisStore) -> None:
    await open_breaker(redis_store, "quota", 1000)
    await open_breaker(redis_store, "key_invalid", 1)
    state = await breaker_state(redis_store)
    assert state is not None and state.reason == "key_invalid"
    assert state.seconds_remaining <= 1

    async def closed() -> bool:
        return await breaker_state(redis_store) is None

    await eventually(closed)  # the key's TTL runs in Redis, in real time: poll it


async def test_probe_lock_has_one_winner(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    wins = 0

    async def one(store: RedisStore) -> None:
        nonlocal wins
        won = await try_probe(store, 30)  # not `wins += await ...`: that reads wins first
        wins += won

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, redis_store if i % 2 else replica_store)
    assert wins == 1
    await assert_every_key_has_ttl(redis_store)
    await end_probe(replica_store)
    assert await try_probe(redis_store, 30)
    assert not await try_probe(replica_store, 30)


# -- units and the restore -------------------------------------------------------------------


def test_one_cost_table() -> None:
    assert dict(UNIT_COSTS) == {
        "search": 100,
        "videos": 1,
        "playlist_insert": 50,
        "playlist_create": 50,
    }
    assert UNIT_COSTS["search"] + UNIT_COSTS["videos"] == SEARCH_UNITS
    assert budget_units(100) == 10_100
    assert [searches_left(budget_units(3), used) for used in (0, 101, 202, 203, 303, 400)] == [
        3,
        2,
        1,
        0,
        0,
        0,
    ]


async def test_the_budget_is_decided_in_units(redis_store: RedisStore) -> None:
    """N ordinary searches fit a budget of N; other calls' units spend the same budget."""
    budget = budget_units(3)
    for expected in (1, 2, 3):
        reservation = await reserve_search(redis_store, DAY, budget=budget)
        assert (reservation.allowed, reservation.searches) == (True, expected)
        await add_units(redis_store, DAY, UNIT_COSTS["videos"])
    assert not (await reserve_search(redis_store, DAY, budget=budget)).allowed
    assert await quota_usage(redis_store, DAY) == QuotaUsage(searches=3, units=303)
    # Retries and playlist writes spend units: a search that no longer fits is refused.
    other = "2024-03-11"
    assert (await reserve_search(redis_store, other, budget=budget)).remaining == 2
    await add_units(redis_store, other, UNIT_COSTS["search"])  # a retried search.list
    await add_units(redis_store, other, UNIT_COSTS["playlist_insert"])
    last = await reserve_search(redis_store, other, budget=budget)
    assert (last.allowed, last.units, last.remaining) == (False, 250, 0)


async def test_counting_only_on_an_existing_counter(redis_store: RedisStore) -> None:
    budget = budget_units(5)
    assert await reserve_search_if_counted(redis_store, DAY, budget=budget) is None
    assert await add_units_if_counted(redis_store, DAY, 1) is None
    assert await redis_store.call(redis_store.client.keys, redis_store.prefix + "*") == set()
    await restore_usage(redis_store, DAY, QuotaUsage(searches=0, units=0))
    reservation = await reserve_search_if_counted(redis_store, DAY, budget=budget)
    assert reservation is not None and (reservation.allowed, reservation.searches) == (True, 1)
    assert await add_units_if_counted(redis_store, DAY, 1) == 101


async def test_restore_raises_each_counter_and_never_lowers_one(redis_store: RedisStore) -> None:
    # A missing day is created, with its TTL.
    assert await restore_usage(redis_store, DAY, QuotaUsage(4, 404)) == QuotaUsage(4, 404)
    await assert_every_key_has_ttl(redis_store)
    # Lower saved values change nothing; higher ones raise only their own counter.
    assert await restore_usage(redis_store, DAY, QuotaUsage(1, 900)) == QuotaUsage(4, 900)
    assert await restore_usage(redis_store, DAY, QuotaUsage(0, 0)) == QuotaUsage(4, 900)
    assert await quota_usage(redis_store, DAY) == QuotaUsage(4, 900)
    # A reservation counts on top of the restored counter.
    reservation = await reserve_search(redis_store, DAY, budget=budget_units(100))
    assert (reservation.searches, reservation.units) == (5, 1000)
    with pytest.raises(ValueError, match="usage"):
        await restore_usage(redis_store, DAY, QuotaUsage(-1, 0))
