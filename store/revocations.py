"""Revoked users in Redis: one small marker per deleted account, shared by every replica.

Our access tokens are self-contained JWTs: nothing is looked up to accept one, so deleting an
account alone would leave its tokens working until they expire. The marker closes that gap:
``revoked-user:<user id>`` exists while any token of the user could still verify, and the
bearer guard refuses every token whose subject has one. It is written once the deletion has
committed and expires by itself (``ttl_seconds``: the caller passes the access-token lifetime
plus the verifier's clock leeway and a margin), so Redis keeps nothing longer than needed. It
holds no personal data: the user ID is a random UUID that no longer names anybody, and the
value is the revocation time in whole seconds since the epoch, for operators.
"""

from __future__ import annotations

import uuid

from store.redis import RedisStore

__all__ = ["is_user_revoked", "mark_user_revoked"]


def _key(store: RedisStore, user_id: uuid.UUID) -> str:
    return store.key("revoked-user", str(user_id))


async def mark_user_revoked(
    store: RedisStore, user_id: uuid.UUID, *, at: int, ttl_seconds: int
) -> None:
    """Write (or refresh) the marker of a revoked user.

    Idempotent: writing it again only moves the expiry, so a retried deletion is harmless.

    Args:
        store: The Redis store.
        user_id: The deleted user.
        at: When, in whole seconds since the epoch (stored as the value).
        ttl_seconds: How long the marker lives; at least 1.

    Raises:
        RedisUnavailable: Redis is down or too slow; the marker may or may not be written.
    """
    with store.fail_fast():
        await store.client.set(_key(store, user_id), str(at).encode(), ex=max(1, ttl_seconds))


async def is_user_revoked(store: RedisStore, user_id: uuid.UUID) -> bool:
    """Whether the user has a live revocation marker (one ``EXISTS``).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        return await store.client.exists([_key(store, user_id)]) > 0
