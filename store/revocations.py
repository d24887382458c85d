"""Revoked access tokens in Redis: small markers shared by every replica.

Our access tokens are self-contained JWTs: nothing is looked up to accept one, so deleting an
account or logging out alone would leave its tokens working until they expire. The markers
close that gap; the bearer guard refuses a token when either applies to it:

- ``revoked-user:<user id>``: every token of a deleted account (whatever its family);
- ``revoked-family:<family id>``: every token issued in one sign-in (refresh-token family,
  the token's ``sid`` claim), after a logout or a detected refresh-token reuse.

A marker is written once the change it stands for has committed, and expires by itself
(``ttl_seconds``: the caller passes the access-token lifetime plus the verifier's clock leeway
and a margin), so Redis keeps nothing longer than needed. Markers hold no personal data: the
IDs are random UUIDs, and the value is the revocation time in whole seconds since the epoch,
for operators. Both are read with one command (:func:`select_revocations`), so the guard's
check costs one round trip whatever applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from store.redis import RedisStore

__all__ = [
    "mark_family_revoked",
    "mark_user_revoked",
    "select_many_revocations",
    "select_revocations",
]


def _user_key(store: RedisStore, user_id: uuid.UUID) -> str:
    return store.key("revoked-user", str(user_id))


def _family_key(store: RedisStore, family_id: uuid.UUID) -> str:
    return store.key("revoked-family", str(family_id))


async def _mark(store: RedisStore, key: str, at: int, ttl_seconds: int) -> None:
    with store.fail_fast():
        await store.client.set(key, str(at).encode(), ex=max(1, ttl_seconds))


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
    await _mark(store, _user_key(store, user_id), at, ttl_seconds)


async def mark_family_revoked(
    store: RedisStore, family_id: uuid.UUID, *, at: int, ttl_seconds: int
) -> None:
    """Write (or refresh) the marker of a revoked token family (one sign-in).

    Idempotent, like :func:`mark_user_revoked`: a retried logout is harmless.

    Args:
        store: The Redis store.
        family_id: The refresh-token family, the ``sid`` of its access tokens.
        at: When, in whole seconds since the epoch (stored as the value).
        ttl_seconds: How long the marker lives; at least 1.

    Raises:
        RedisUnavailable: Redis is down or too slow; the marker may or may not be written.
    """
    await _mark(store, _family_key(store, family_id), at, ttl_seconds)


async def select_revocations(
    store: RedisStore, user_id: uuid.UUID, family_id: uuid.UUID | None
) -> tuple[bool, bool]:
    """Whether the user, and the family, have a live marker: one ``MGET``, one round trip.

    ``MGET`` rather than ``EXISTS user family``: its count would not say which of the two is
    revoked, and the caller remembers them apart (a revoked family says nothing about the
    user's other sign-ins). On a Redis Cluster the two keys would need a common hash tag.

    Args:
        store: The Redis store.
        user_id: The token's user.
        family_id: The token's family; None for a token without one (only the user is read).

    Returns:
        ``(user revoked, family revoked)``; the second is False when ``family_id`` is None.

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    keys = [_user_key(store, user_id)]
    if family_id is not None:
        keys.append(_family_key(store, family_id))
    with store.fail_fast():
        values = await store.client.mget(keys)
    return values[0] is not None, len(values) > 1 and values[1] is not None


async def select_many_revocations(
    store: RedisStore, pairs: Sequence[tuple[uuid.UUID, uuid.UUID | None]]
) -> list[tuple[bool, bool]]:
    """:func:`select_revocations` for several ``(user, family)`` pairs: still one ``MGET``.

    Args:
        store: The Redis store.
        pairs: ``(user, family)`` pairs; a family of None reads only the user's marker.

    Returns:
        ``(user revoked, family revoked)`` for each pair, in order.

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    keys: list[str] = []
    for user_id, family_id in pairs:
        keys.append(_user_key(store, user_id))
        if family_id is not None:
            keys.append(_family_key(store, family_id))
    with store.fail_fast():
        values = await store.client.mget(keys)
    answers: list[tuple[bool, bool]] = []
    at = 0
    for _, family_id in pairs:
        user_revoked = values[at] is not None
        at += 1
        family_revoked = False
        if family_id is not None:
            family_revoked = values[at] is not None
            at += 1
        answers.append((user_revoked, family_revoked))
    return answers
