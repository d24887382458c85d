"""The suggest cache's Redis layer: entry format, expiry, the single-flight lease."""

from __future__ import annotations

import pytest

from store.redis import RedisStore
from store.suggest_cache import (
    CacheEntry,
    cache_keys,
    decode_entry,
    encode_entry,
    read_entry,
    read_entry_and_lease,
    release_lease,
    take_lease,
    write_entry,
)

NOW = 1_750_000_000.0
ENTRY = CacheEntry(
    items_json=b'[{"videoId":"a","title":"caf\xc3\xa9\\n"}]',
    fetched_at=NOW,
    fresh_until=NOW + 1200,
    stale_until=NOW + 86_400,
)


def test_entries_round_trip_and_keep_the_items_bytes_as_stored() -> None:
    assert decode_entry(encode_entry(ENTRY)) == ENTRY
    assert encode_entry(ENTRY).endswith(b"\n" + ENTRY.items_json)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"v0 1 2 3\n[]",
        b"v1 1 2\n[]",
        b"v1 1 2 x\n[]",
        b"v1 1 2 nan\n[]",
        b"v1 1 2 3",
    ],
)
def test_unreadable_values_are_misses_not_errors(raw: bytes) -> None:
    assert decode_entry(raw) is None


def test_freshness_and_max_age() -> None:
    assert ENTRY.fresh(NOW + 1199.5)
    assert ENTRY.max_age(NOW + 0.4) == 1199
    assert not ENTRY.fresh(NOW + 1200)
    assert ENTRY.max_age(NOW + 5000) == 0
    assert ENTRY.usable(NOW + 86_399)
    assert not ENTRY.usable(NOW + 86_400)


async def test_keys_depend_on_query_and_parameters_and_hold_no_query_text(
    redis_store: RedisStore,
) -> None:
    keys = cache_keys(redis_store, "lofi beats", 10)
    assert keys == cache_keys(redis_store, "lofi beats", 10)
    assert keys.entry != cache_keys(redis_store, "lofi beats", 5).entry
    assert keys.entry != cache_keys(redis_store, "lofi beat", 10).entry
    assert "lofi" not in keys.entry and keys.entry.startswith(redis_store.prefix)
    assert keys.lease != keys.entry


async def test_written_entries_expire_at_the_stale_horizon(redis_store: RedisStore) -> None:
    keys = cache_keys(redis_store, "lofi", 10)
    assert await read_entry(redis_store, keys) is None
    await write_entry(redis_store, keys, ENTRY, now=NOW + 86_000)
    assert await read_entry(redis_store, keys) == ENTRY
    ttl_ms = await redis_store.client.pttl(keys.entry)
    assert 399_000 <= ttl_ms <= 400_000
    # Already past the horizon: still written, for the shortest time (one second).
    await write_entry(redis_store, keys, ENTRY, now=NOW + 90_000)
    assert 0 < await redis_store.client.pttl(keys.entry) <= 1000


async def test_one_lease_holder_and_only_the_holder_releases(redis_store: RedisStore) -> None:
    keys = cache_keys(redis_store, "lofi", 10)
    assert await read_entry_and_lease(redis_store, keys) == (None, False)
    token = await take_lease(redis_store, keys, 5)
    assert token is not None
    assert await take_lease(redis_store, keys, 5) is None
    assert await read_entry_and_lease(redis_store, keys) == (None, True)
    assert not await release_lease(redis_store, keys, "not-the-token")
    assert await read_entry_and_lease(redis_store, keys) == (None, True)
    await write_entry(redis_store, keys, ENTRY, now=NOW)
    assert await release_lease(redis_store, keys, token)
    assert await read_entry_and_lease(redis_store, keys) == (ENTRY, False)
    assert await take_lease(redis_store, keys, 5) is not None


async def test_leases_expire_by_themselves(redis_store: RedisStore) -> None:
    keys = cache_keys(redis_store, "lofi", 10)
    assert await take_lease(redis_store, keys, 0.05) is not None
    assert 0 < await redis_store.client.pttl(keys.lease) <= 50
    with pytest.raises(ValueError):
        await take_lease(redis_store, keys, 0)
