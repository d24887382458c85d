"""The playlists' share of the daily units and the per-user cap in Redis (store.playlist_quota)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from store.playlist_quota import (
    PlaylistUsage,
    Verdict,
    exhaust_playlist_budget,
    playlist_usage,
    reserve_playlist_units,
)
from store.quota import add_units, budget_units, quota_usage, reserve_search
from store.redis import RedisSettings, RedisStore, open_redis

DAY = "2024-03-10"
USER = uuid.UUID(int=1)
# Ten searches a day (1,010 units); the playlists may spend 200 of them.
DAY_UNITS = budget_units(10)
SHARE = 200


@pytest.fixture
async def replica_store(redis_store: RedisStore) -> AsyncIterator[RedisStore]:
    """Another connection to the same Redis and prefix, as a second replica would have."""
    settings = RedisSettings(url=redis_store.settings.url, prefix=redis_store.prefix)
    async with open_redis(settings) as store:
        yield store


async def reserve(
    store: RedisStore,
    cost: int = 50,
    *,
    user: uuid.UUID = USER,
    limit: int = 100,
    first: bool = True,
    create: bool = True,
) -> Verdict:
    grant = await reserve_playlist_units(
        store,
        DAY,
        user,
        cost=cost,
        day_budget=DAY_UNITS,
        playlist_budget=SHARE,
        user_limit=limit,
        count_user=first,
        create=create,
    )
    return grant.verdict


async def test_writes_stop_at_their_share_and_spend_the_days_units(redis_store: RedisStore) -> None:
    assert [await reserve(redis_store, 100), await reserve(redis_store)] == [Verdict.ALLOWED] * 2
    assert await reserve(redis_store) is Verdict.ALLOWED
    assert await reserve(redis_store) is Verdict.SHARE_SPENT
    assert await playlist_usage(redis_store, DAY) == PlaylistUsage(200, 200)
    assert (await quota_usage(redis_store, DAY)).units == 200


async def test_searches_keep_everything_but_the_share(redis_store: RedisStore) -> None:
    while await reserve(redis_store) is Verdict.ALLOWED:
        pass
    searches = 0
    while (await reserve_search(redis_store, DAY, budget=DAY_UNITS)).allowed:
        searches += 1
    assert searches == (DAY_UNITS - SHARE) // 101  # 8 of the 10: the share took 200 units


async def test_writes_never_overdraw_what_searches_spent(redis_store: RedisStore) -> None:
    await add_units(redis_store, DAY, DAY_UNITS - 60)
    assert await reserve(redis_store) is Verdict.ALLOWED
    assert await reserve(redis_store) is Verdict.DAY_SPENT
    assert (await quota_usage(redis_store, DAY)).units == DAY_UNITS - 10


async def test_the_user_cap_counts_requests_not_calls(redis_store: RedisStore) -> None:
    assert await reserve(redis_store, limit=2) is Verdict.ALLOWED
    assert await reserve(redis_store, limit=2, first=False) is Verdict.ALLOWED  # a recreation
    assert await reserve(redis_store, limit=2) is Verdict.ALLOWED
    assert await reserve(redis_store, limit=2) is Verdict.USER_CAP
    assert await reserve(redis_store, limit=2, user=uuid.UUID(int=2)) is Verdict.ALLOWED
    assert (await playlist_usage(redis_store, DAY)).playlist_units == 200


async def test_a_missing_day_is_not_created_when_asked_not_to(redis_store: RedisStore) -> None:
    assert await reserve(redis_store, create=False) is Verdict.MISSING
    assert await playlist_usage(redis_store, DAY) == PlaylistUsage(0, 0)


async def test_quota_exceeded_spends_the_share(redis_store: RedisStore) -> None:
    assert await reserve(redis_store) is Verdict.ALLOWED
    assert await exhaust_playlist_budget(redis_store, DAY, SHARE) == SHARE
    assert await reserve(redis_store) is Verdict.SHARE_SPENT
    assert (await quota_usage(redis_store, DAY)).units == 50  # only what was spent


async def test_concurrent_replicas_never_overspend(
    redis_store: RedisStore, replica_store: RedisStore
) -> None:
    verdicts: list[Verdict] = []

    async def one(store: RedisStore, n: int) -> None:
        verdicts.append(await reserve(store, user=uuid.UUID(int=n)))

    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(one, (redis_store, replica_store)[n % 2], n)
    assert verdicts.count(Verdict.ALLOWED) == SHARE // 50
    assert (await playlist_usage(redis_store, DAY)).playlist_units == SHARE
