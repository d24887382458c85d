"""Popularity of normalized queries: windowed hourly buckets, bounded, with TTLs."""

from __future__ import annotations

import pytest

from store.popularity import (
    BUCKET_SECONDS,
    query_count,
    record_queries,
    record_query,
    top_queries,
)
from store.redis import RedisStore

# An hour boundary plus ten minutes, so "now" sits inside a bucket.
T0 = 1_710_000_000 - 1_710_000_000 % BUCKET_SECONDS + 600
DAY = 24 * 3600


async def record(store: RedisStore, query: str, times: int, now: float, **kw: int) -> None:
    for _ in range(times):
        await record_query(store, query, now=now, **kw)


async def test_ordering_by_count_then_text(redis_store: RedisStore) -> None:
    await record(redis_store, "lofi mix", 3, T0)
    await record(redis_store, "jazz", 5, T0)
    await record(redis_store, "cats", 1, T0)
    await record(redis_store, "dogs", 1, T0 + 60)
    top = await top_queries(redis_store, limit=10, now=T0 + 60)
    assert top == [("jazz", 5.0), ("lofi mix", 3.0), ("dogs", 1.0), ("cats", 1.0)]
    assert await top_queries(redis_store, limit=2, now=T0 + 60) == top[:2]


async def test_counts_add_across_hours_within_the_window(redis_store: RedisStore) -> None:
    await record(redis_store, "a", 2, T0)
    await record(redis_store, "b", 3, T0)
    await record(redis_store, "a", 2, T0 + 5 * 3600)
    assert await top_queries(redis_store, limit=5, now=T0 + 5 * 3600) == [
        ("a", 4.0),
        ("b", 3.0),
    ]


async def test_old_hours_leave_the_window(redis_store: RedisStore) -> None:
    await record(redis_store, "old", 5, T0, window_seconds=DAY)
    await record(redis_store, "new", 1, T0 + DAY + BUCKET_SECONDS, window_seconds=DAY)
    now = T0 + DAY + BUCKET_SECONDS
    assert await top_queries(redis_store, limit=5, now=now, window_seconds=DAY) == [("new", 1.0)]
    # A longer read window (and the old bucket's key still alive) would see both.
    assert await top_queries(redis_store, limit=5, now=T0 + 3600, window_seconds=DAY) == [
        ("old", 5.0)
    ]


async def test_decay_weighs_recent_hours_more(redis_store: RedisStore) -> None:
    await record(redis_store, "yesterday-ish", 6, T0)
    await record(redis_store, "now", 2, T0 + 4 * 3600)
    now = T0 + 4 * 3600
    flat = await top_queries(redis_store, limit=5, now=now)
    assert [q for q, _ in flat] == ["yesterday-ish", "now"]
    decayed = await top_queries(redis_store, limit=5, now=now, half_life_seconds=3600)
    assert decayed == [("now", 2.0), ("yesterday-ish", pytest.approx(6 / 16))]


async def test_buckets_are_bounded(redis_store: RedisStore) -> None:
    await record(redis_store, "popular", 3, T0, max_entries=3)
    await record(redis_store, "second", 2, T0, max_entries=3)
    for i in range(10):
        await record_query(redis_store, f"rare {i}", now=T0, max_entries=3)
    key = redis_store.key("pop", "{w}", str(T0 // BUCKET_SECONDS))
    assert await redis_store.call(redis_store.client.zcard, key) == 3
    top = await top_queries(redis_store, limit=10, now=T0)
    assert top[:2] == [("popular", 3.0), ("second", 2.0)]
    assert len(top) == 3


async def test_keys_expire_with_the_window_and_reads_leave_nothing(
    redis_store: RedisStore,
) -> None:
    await record_query(redis_store, "q", now=T0, window_seconds=DAY)
    await top_queries(redis_store, limit=1, now=T0)
    keys = await redis_store.call(redis_store.client.keys, redis_store.prefix + "*")
    assert len(keys) == 1  # the bucket only; the read's scratch key is gone
    ttl = await redis_store.call(redis_store.client.ttl, next(iter(keys)))
    # Until the end of its hour (50 min away) plus the window.
    assert DAY + 3000 - 5 <= ttl <= DAY + 3000


async def test_only_the_query_text_is_stored(redis_store: RedisStore) -> None:
    await record_query(redis_store, "cats", now=T0)
    key = redis_store.key("pop", "{w}", str(T0 // BUCKET_SECONDS))
    members = await redis_store.call(redis_store.client.zrange, key, 0, -1)
    assert members == (b"cats",)


async def test_bad_arguments(redis_store: RedisStore) -> None:
    with pytest.raises(ValueError, match="characters"):
        await record_query(redis_store, "", now=T0)
    with pytest.raises(ValueError, match="characters"):
        await record_query(redis_store, "x" * 513, now=T0)
    with pytest.raises(ValueError, match="window"):
        await record_query(redis_store, "x", now=T0, window_seconds=0)
    with pytest.raises(ValueError, match="limit"):
        await top_queries(redis_store, limit=0, now=T0)
    with pytest.raises(ValueError, match="half_life"):
        await top_queries(redis_store, limit=1, now=T0, half_life_seconds=0)
    assert await top_queries(redis_store, limit=3, now=T0) == []


async def test_a_batch_adds_each_count_in_one_call(redis_store: RedisStore) -> None:
    await record_queries(redis_store, {"jazz": 4, "lofi mix": 2}, now=T0)
    await record_queries(redis_store, {"lofi mix": 3}, now=T0 + 60)
    await record_queries(redis_store, {}, now=T0)  # nothing to write
    assert await top_queries(redis_store, limit=5, now=T0 + 60) == [
        ("lofi mix", 5.0),
        ("jazz", 4.0),
    ]


async def test_a_batch_is_checked_before_anything_is_written(redis_store: RedisStore) -> None:
    with pytest.raises(ValueError, match="count"):
        await record_queries(redis_store, {"ok": 1, "bad": 0}, now=T0)
    with pytest.raises(ValueError, match="characters"):
        await record_queries(redis_store, {"ok": 1, "x" * 513: 1}, now=T0)
    assert await top_queries(redis_store, limit=5, now=T0) == []


async def test_query_count_sums_the_hours_since_a_time(redis_store: RedisStore) -> None:
    hour = T0 - 600  # the bucket's first second
    await record(redis_store, "lofi", 2, hour - 1)  # the hour before
    await record(redis_store, "lofi", 3, T0)
    await record(redis_store, "lofi", 1, T0 + BUCKET_SECONDS)
    await record(redis_store, "jazz", 4, T0)
    now = T0 + BUCKET_SECONDS
    assert await query_count(redis_store, "lofi", now=now, since=hour) == 4
    assert await query_count(redis_store, "lofi", now=now, since=hour - 1) == 6
    assert await query_count(redis_store, "cats", now=now, since=hour) == 0
    with pytest.raises(ValueError):
        await query_count(redis_store, "lofi", now=hour, since=now)
