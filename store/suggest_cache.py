"""The shared suggest cache and its single-flight lease, in Redis.

One key per normalized query and search parameters holds the ranked answer for its whole
life: fresh until ``fresh_until``, then stale until the key expires (``stale_until``). Reading
it and the lease in one ``MGET`` lets a replica that waits for another replica's search poll
both at the cost of one round trip.

Value layout (bytes): ``v1 <fetched_at> <fresh_until> <stale_until>\\n<items JSON>``. The
items are the response's JSON array, stored as sent, so a hit splices them into the answer
without decoding them.

The lease is ``SET NX PX`` with a random token; only its holder deletes it (compare and delete
in one script), and it expires by itself should the holder die mid-search.

Keys: ``sg:v1:<max results>:<hash of the query>`` and ``sg:lease:<same>``. The query is hashed
(BLAKE2b, 128 bits) so keys stay short and free of user text.
"""

from __future__ import annotations

import hashlib
import math

import attrs

from store.keylease import release_key_lease, take_key_lease
from store.redis import RedisStore

__all__ = [
    "CacheEntry",
    "CacheKeys",
    "cache_keys",
    "decode_entry",
    "encode_entry",
    "read_entry",
    "read_entry_and_lease",
    "release_lease",
    "take_lease",
    "write_entry",
]

_VERSION = b"v1"


@attrs.frozen
class CacheKeys:
    """The Redis keys of one query: its entry and its single-flight lease."""

    entry: str
    lease: str


@attrs.frozen
class CacheEntry:
    """A cached answer.

    Attributes:
        items_json: The response's ``items`` array, serialized.
        fetched_at: Wall-clock seconds of the search.
        fresh_until: Until then it is served as a ``HIT``.
        stale_until: Until then it may be served as ``STALE``; the key expires then.
    """

    items_json: bytes
    fetched_at: float
    fresh_until: float
    stale_until: float

    def fresh(self, now: float) -> bool:
        """Whether it is still fresh at ``now``."""
        return now < self.fresh_until

    def usable(self, now: float) -> bool:
        """Whether it may still be served at all (fresh or stale) at ``now``."""
        return now < self.stale_until

    def max_age(self, now: float) -> int:
        """Whole seconds of freshness left (0 once stale): ``Cache-Control: max-age``."""
        return max(0, math.floor(self.fresh_until - now))


def cache_keys(store: RedisStore, query: str, max_results: int) -> CacheKeys:
    """The keys of ``query`` (normalized text) searched with ``max_results``."""
    digest = hashlib.blake2b(query.encode(), digest_size=16).hexdigest()
    tail = f"{max_results}:{digest}"
    return CacheKeys(entry=store.key("sg", "v1", tail), lease=store.key("sg", "lease", tail))


def encode_entry(entry: CacheEntry) -> bytes:
    """The stored form of ``entry``."""
    header = f"{entry.fetched_at!r} {entry.fresh_until!r} {entry.stale_until!r}".encode()
    return _VERSION + b" " + header + b"\n" + entry.items_json


def decode_entry(raw: bytes) -> CacheEntry | None:
    """The entry stored as ``raw``, or None when it is not in the current format.

    An unreadable value (an older format after an upgrade, or corruption) is a miss, never an
    error: the next search overwrites it.
    """
    header, newline, items = raw.partition(b"\n")
    parts = header.split(b" ")
    if not newline or len(parts) != 4 or parts[0] != _VERSION:
        return None
    try:
        fetched_at, fresh_until, stale_until = (float(p) for p in parts[1:])
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (fetched_at, fresh_until, stale_until)):
        return None
    return CacheEntry(items, fetched_at, fresh_until, stale_until)


async def read_entry(store: RedisStore, keys: CacheKeys) -> CacheEntry | None:
    """The cached entry, or None.

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        raw = await store.client.get(keys.entry)
    return None if raw is None else decode_entry(raw)


async def read_entry_and_lease(
    store: RedisStore, keys: CacheKeys
) -> tuple[CacheEntry | None, bool]:
    """The cached entry (or None) and whether a lease is held on the query, in one round trip.

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        raw, lease = await store.client.mget([keys.entry, keys.lease])
    return (None if raw is None else decode_entry(raw)), lease is not None


async def write_entry(store: RedisStore, keys: CacheKeys, entry: CacheEntry, *, now: float) -> None:
    """Store ``entry``; the key expires at ``entry.stale_until`` (at least a second from now).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    ttl_ms = max(1000, math.ceil((entry.stale_until - now) * 1000))
    with store.fail_fast():
        await store.client.set(keys.entry, encode_entry(entry), px=ttl_ms)


async def take_lease(store: RedisStore, keys: CacheKeys, seconds: float) -> str | None:
    """Take the query's single-flight lease for ``seconds``; its token, or None when held.

    Raises:
        ValueError: ``seconds`` is under a millisecond.
        RedisUnavailable: Redis is down or too slow.
    """
    return await take_key_lease(store, keys.lease, seconds)


async def release_lease(store: RedisStore, keys: CacheKeys, token: str) -> bool:
    """Release the lease if ``token`` still holds it; whether it did.

    Raises:
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    return await release_key_lease(store, keys.lease, token)
