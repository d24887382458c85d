"""The warming ledger (``store.warm``) on the real Redis."""

from __future__ import annotations

import pytest
import trio

from store.redis import RedisStore
from store.warm import give_back_warm_search, take_warm_search, warm_spent

DAY = "2026-06-10"


async def test_searches_are_taken_up_to_the_cap_and_given_back_never_below_zero(
    redis_store: RedisStore,
) -> None:
    assert await warm_spent(redis_store, DAY) == 0
    assert await take_warm_search(redis_store, DAY, cap=2) == 1
    assert await take_warm_search(redis_store, DAY, cap=2) == 2
    assert await take_warm_search(redis_store, DAY, cap=2) is None  # nothing written
    assert await warm_spent(redis_store, DAY) == 2
    assert await warm_spent(redis_store, "2026-06-11") == 0  # one counter a day
    assert await give_back_warm_search(redis_store, DAY) == 1
    assert await give_back_warm_search(redis_store, DAY) == 0
    assert await give_back_warm_search(redis_store, DAY) == 0
    assert await take_warm_search(redis_store, DAY, cap=1) == 1
    ttl = await redis_store.client.ttl(redis_store.key("warm", DAY))
    assert 0 < ttl <= 2 * 24 * 3600


async def test_concurrent_takers_never_pass_the_cap(redis_store: RedisStore) -> None:
    taken: list[int | None] = []

    async def take() -> None:
        taken.append(await take_warm_search(redis_store, DAY, cap=5))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(take)
    assert sorted(t for t in taken if t is not None) == [1, 2, 3, 4, 5]
    assert await warm_spent(redis_store, DAY) == 5


async def test_bad_arguments_are_refused(redis_store: RedisStore) -> None:
    with pytest.raises(ValueError, match="cap"):
        await take_warm_search(redis_store, DAY, cap=-1)
