"""The cache-warming ledger: how many searches warming spent on each Pacific day.

Warming may spend only a share of the day's YouTube budget (``tasks.warm``), counted here,
apart from the day's shared quota counter (``store.quota``, which counts every search, warming's
included). The key is ``warm:<day>`` (``YYYY-MM-DD``, the Pacific day the caller names), a
plain counter with a TTL, shared by every replica.

Concurrency: a search is taken with one script (compare with the cap, then increment), so of
any number of concurrent takers at most ``cap`` are counted; a search that was not made after
all is given back with one script that never goes below zero. A process that dies between the
two leaves the search counted: the ledger errs towards warming less, never more.
"""

from __future__ import annotations

from coredis.commands import Script

from store.quota import QUOTA_KEY_TTL_SECONDS
from store.redis import RedisStore, RedisUnavailable

__all__ = ["give_back_warm_search", "take_warm_search", "warm_spent"]

# KEYS[1] the day's counter; ARGV[1] cap, ARGV[2] TTL (s). Returns the count after (or -1).
_TAKE_LUA = """
local spent = tonumber(redis.call('GET', KEYS[1])) or 0
if spent >= tonumber(ARGV[1]) then
  return -1
end
spent = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return spent
"""
_TAKE_SCRIPT: Script[bytes] = Script(script=_TAKE_LUA)

# KEYS[1] the day's counter. Returns the count after.
_GIVE_BACK_LUA = """
local spent = tonumber(redis.call('GET', KEYS[1])) or 0
if spent <= 0 then
  return 0
end
return redis.call('DECR', KEYS[1])
"""
_GIVE_BACK_SCRIPT: Script[bytes] = Script(script=_GIVE_BACK_LUA)


def _key(store: RedisStore, day: str) -> str:
    return store.key("warm", day)


def _count(reply: object, what: str) -> int:
    if not isinstance(reply, int):
        raise RedisUnavailable(f"unexpected reply from the {what} script: {reply!r}")
    return reply


async def take_warm_search(
    store: RedisStore, day: str, *, cap: int, ttl_seconds: int = QUOTA_KEY_TTL_SECONDS
) -> int | None:
    """Count one warming search on ``day`` if fewer than ``cap`` were counted, atomically.

    Returns:
        The day's count with this one, or None when the cap was reached (nothing written).

    Raises:
        ValueError: A negative cap or a TTL under one second.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    if cap < 0 or ttl_seconds < 1:
        raise ValueError(f"bad cap/ttl: {cap}, {ttl_seconds}")
    reply = await store.run_script(
        _TAKE_SCRIPT, [_key(store, day)], [str(cap), str(ttl_seconds)], what="warming ledger"
    )
    spent = _count(reply, "warming ledger")
    return None if spent < 0 else spent


async def give_back_warm_search(store: RedisStore, day: str) -> int:
    """Uncount one warming search on ``day`` (it was not made); never below zero.

    Returns:
        The day's count after.

    Raises:
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    reply = await store.run_script(_GIVE_BACK_SCRIPT, [_key(store, day)], [], what="warming ledger")
    return _count(reply, "warming ledger")


async def warm_spent(store: RedisStore, day: str) -> int:
    """The warming searches counted on ``day`` (0 for a day with none).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        value = await store.client.get(_key(store, day))
    return int(value or 0)
