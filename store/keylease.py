"""A lease on one Redis key: taken with ``SET NX PX`` and a random token, released only by its
holder (compare-and-delete in one script), expiring by itself if the holder dies.

Used for suggest's single-flight (``store.suggest_cache``) and the playlist write lock
(``store.playlist_writes``). Every function raises ``RedisUnavailable`` when Redis is down, too
slow, or refuses the script.
"""

from __future__ import annotations

import math
import secrets

from coredis.commands import Script
from coredis.tokens import PureToken

from store.redis import RedisStore

__all__ = ["release_key_lease", "take_key_lease"]

# KEYS[1] lease; ARGV[1] token. Deletes the lease only when it is still ours.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RELEASE_SCRIPT: Script[bytes] = Script(script=_RELEASE_LUA)


async def take_key_lease(store: RedisStore, key: str, seconds: float) -> str | None:
    """Take the lease on ``key`` (already prefixed) for ``seconds``; its token, or None when
    another holder has it.

    Raises:
        ValueError: ``seconds`` is under a millisecond.
        RedisUnavailable: Redis is down or too slow.
    """
    ttl_ms = math.ceil(seconds * 1000)
    if ttl_ms < 1:
        raise ValueError(f"lease seconds must be positive, not {seconds}")
    token = secrets.token_hex(16)
    with store.fail_fast():
        created = await store.client.set(key, token.encode(), condition=PureToken.NX, px=ttl_ms)
    return token if created else None


async def release_key_lease(store: RedisStore, key: str, token: str) -> bool:
    """Release the lease on ``key`` if ``token`` still holds it; whether it did.

    Raises:
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    reply = await store.run_script(_RELEASE_SCRIPT, [key], [token], what="lease release")
    return reply == 1
