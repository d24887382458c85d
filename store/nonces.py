"""Single use of sign-in nonces, shared by every replica through Redis.

A nonce's first use sets a marker key with ``SET NX`` (atomic: of two concurrent uses exactly
one sees the key created); the marker expires with the nonce, so Redis keeps nothing longer
than the nonce could be valid.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from coredis.tokens import PureToken

from store.redis import RedisStore

__all__ = ["LocalMarkers", "claim_nonce", "claim_once"]


async def claim_nonce(store: RedisStore, nonce: str, *, ttl_ms: int) -> bool:
    """Record the first use of ``nonce``; False when it was used before.

    The key holds a hash of the nonce, never the nonce itself.

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    digest = hashlib.sha256(nonce.encode()).hexdigest()
    with store.fail_fast():
        created = await store.client.set(
            store.key("nonce", digest), b"1", condition=PureToken.NX, px=max(1, ttl_ms)
        )
    return bool(created)


async def claim_once(store: RedisStore, kind: str, value: str, *, ttl_ms: int) -> bool:
    """Record the first use of ``value`` among the ``kind`` markers (e.g. consent states);
    False when it was used before. Like :func:`claim_nonce`, the key holds only a hash.

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    digest = hashlib.sha256(value.encode()).hexdigest()
    with store.fail_fast():
        created = await store.client.set(
            store.key(kind, digest), b"1", condition=PureToken.NX, px=max(1, ttl_ms)
        )
    return bool(created)


class LocalMarkers:
    """The per-process stand-in for :func:`claim_once` while Redis is down: first uses
    remembered until they expire, at most ``max_entries`` (oldest forgotten first).

    During an outage a value can then be used once per process instead of once in all.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def claim(self, value: str, *, expires: float, now: float) -> bool:
        """Record the first use of ``value`` (valid until ``expires``); False if seen before."""
        markers = self._expiry
        while markers and (len(markers) >= self._max or next(iter(markers.values())) <= now):
            markers.popitem(last=False)
        if value in markers:
            return False
        markers[value] = expires
        return True
