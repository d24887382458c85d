"""Playlist writes in Redis: one write at a time per user, and remembered answers by
``Idempotency-Key``.

Keys (under ``RedisStore.key``, each with a TTL):

- ``playlist:lock:<user>``: held by the request writing for the user (a ``store.keylease``
  lease); released only by its holder. It serialises a user's
  writes, so two concurrent first writes create one playlist, two concurrent adds of the same
  video insert once, and an idempotency record is read and written under it;
- ``playlist:idem:<user>:<sha256 of the key>``: the answer given to that key (the request's
  fingerprint, status and JSON body), replayed for a day. The client's key is hashed: a
  bounded, opaque key name.

Every function raises ``RedisUnavailable`` when Redis is down, too slow or refuses a script.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import attrs

from store.keylease import release_key_lease, take_key_lease
from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "IDEMPOTENCY_TTL_SECONDS",
    "StoredAnswer",
    "read_answer",
    "release_write_lock",
    "save_answer",
    "take_write_lock",
]

# Why a day: a client retries a lost answer within minutes; a day covers an extension that
# was offline meanwhile, and bounds the keys a user can leave behind (one per write).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600


@attrs.frozen
class StoredAnswer:
    """An answer given to an ``Idempotency-Key``.

    Attributes:
        fingerprint: What the request asked (a digest of its body), to tell a replay from a
            reuse of the key for another request.
        status: The HTTP status given.
        body: The JSON document given.
    """

    fingerprint: str
    status: int
    body: dict[str, Any]


def _lock_key(store: RedisStore, user_id: uuid.UUID) -> str:
    return store.key("playlist", "lock", str(user_id))


def _answer_key(store: RedisStore, user_id: uuid.UUID, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return store.key("playlist", "idem", str(user_id), digest)


async def take_write_lock(store: RedisStore, user_id: uuid.UUID, seconds: float) -> str | None:
    """Take the user's write lock for ``seconds``; its token, or None when another write
    holds it."""
    return await take_key_lease(store, _lock_key(store, user_id), seconds)


async def release_write_lock(store: RedisStore, user_id: uuid.UUID, token: str) -> None:
    """Release the lock if ``token`` still holds it (it may have expired and been retaken)."""
    await release_key_lease(store, _lock_key(store, user_id), token)


async def read_answer(
    store: RedisStore, user_id: uuid.UUID, idempotency_key: str
) -> StoredAnswer | None:
    """The answer remembered for the user's key, or None."""
    with store.fail_fast():
        raw = await store.client.get(_answer_key(store, user_id, idempotency_key))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return StoredAnswer(str(data["fingerprint"]), int(data["status"]), dict(data["body"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RedisUnavailable(f"unreadable idempotency record: {exc}") from exc


async def save_answer(
    store: RedisStore,
    user_id: uuid.UUID,
    idempotency_key: str,
    answer: StoredAnswer,
    ttl_seconds: int = IDEMPOTENCY_TTL_SECONDS,
) -> None:
    """Remember ``answer`` for the user's key for ``ttl_seconds``."""
    record = json.dumps(attrs.asdict(answer), separators=(",", ":"))
    with store.fail_fast():
        await store.client.set(_answer_key(store, user_id, idempotency_key), record, ex=ttl_seconds)
