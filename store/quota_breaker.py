"""The shared suggest breaker and its half-open probe lock, in Redis.

Every replica calls the same YouTube project, so one replica tripping the breaker stops them
all; every read-decide-write step is ONE command or ONE Lua script.

Keys (under ``RedisStore.key``; each has a TTL):

- ``quota:breaker``: the breaker's reason (``"quota"``, ``"upstream"``, ``"key_invalid"``),
  optionally followed by ``|<day>`` (the Pacific day a ``"quota"`` breaker belongs to, so a
  replica whose clock is already past midnight does not honour yesterday's breaker); open
  while the key exists, for the key's TTL.
- ``quota:probe``: the half-open probe lock (``SET NX EX``), one winner across replicas.

Every function raises ``RedisUnavailable`` when Redis is down, too slow, or refuses a script
(READONLY, OOM, BUSY); deciding what to do then is the caller's business
(``smartpip.suggest.quota``).
"""

from __future__ import annotations

import attrs
from coredis.commands import Script
from coredis.tokens import PureToken

from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "BREAKER_REASONS",
    "BreakerState",
    "breaker_state",
    "close_breaker",
    "end_probe",
    "open_breaker",
    "try_probe",
]

# The reasons the breaker knows; anything else is a programming error.
BREAKER_REASONS = frozenset({"quota", "upstream", "key_invalid"})

# KEYS[1] breaker. Returns {reason, ms left} read together, or false when closed.
_STATE_LUA = """
local reason = redis.call('GET', KEYS[1])
if not reason then
  return false
end
return {reason, redis.call('PTTL', KEYS[1])}
"""
_STATE_SCRIPT: Script[bytes] = Script(script=_STATE_LUA)

# KEYS[1] breaker; ARGV[1] reason ('' = any). Deletes it only when its reason matches.
_CLOSE_LUA = """
local value = redis.call('GET', KEYS[1])
if not value then
  return 0
end
local reason = string.match(value, '^[^|]*')
if ARGV[1] ~= '' and reason ~= ARGV[1] then
  return 0
end
return redis.call('DEL', KEYS[1])
"""
_CLOSE_SCRIPT: Script[bytes] = Script(script=_CLOSE_LUA)


@attrs.frozen
class BreakerState:
    """An open breaker.

    Attributes:
        reason: Why it is open: ``"quota"``, ``"upstream"`` or ``"key_invalid"``.
        seconds_remaining: Seconds until it closes by itself (from the key's TTL), at least 0.001.
        day: The Pacific day it was opened for, when the opener gave one.
    """

    reason: str
    seconds_remaining: float
    day: str | None = None


def _breaker_key(store: RedisStore) -> str:
    return store.key("quota", "breaker")


def _probe_key(store: RedisStore) -> str:
    return store.key("quota", "probe")


async def open_breaker(
    store: RedisStore, reason: str, seconds: int, *, day: str | None = None
) -> None:
    """Open the shared breaker for ``seconds`` (``SET ... EX``), replacing any open one.

    ``day`` (``YYYY-MM-DD``) ties the breaker to a Pacific day (used for ``"quota"``).

    Concurrency: last writer wins. Callers that must not shorten a longer breaker read
    ``breaker_state`` first; the race between that read and this write only costs one
    more upstream call (which reopens the right breaker).

    Raises:
        ValueError: An unknown reason, a day with ``|``, or fewer than one second.
        RedisUnavailable: Redis is down or too slow.
    """
    if reason not in BREAKER_REASONS:
        raise ValueError(f"unknown breaker reason {reason!r}")
    if day is not None and (not day or "|" in day):
        raise ValueError(f"bad day {day!r}")
    if seconds < 1:
        raise ValueError(f"seconds must be at least 1, not {seconds}")
    with store.fail_fast():
        value = reason if day is None else f"{reason}|{day}"
        await store.client.set(_breaker_key(store), value.encode(), ex=seconds)


async def breaker_state(store: RedisStore) -> BreakerState | None:
    """The open breaker, or None when it is closed.

    Reason and TTL are read in one script, so they belong to the same breaker.

    Raises:
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    reply = await store.run_script(_STATE_SCRIPT, [_breaker_key(store)], [], what="quota")
    if reply is None:
        return None
    if not (
        isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[0], bytes)
        and isinstance(reply[1], int)
    ):
        raise RedisUnavailable(f"unexpected reply from the breaker-state script: {reply!r}")
    value, pttl = reply
    reason, _, day = value.decode().partition("|")
    # PTTL -1 (no TTL) cannot happen through this module; treat it as "about to close".
    return BreakerState(reason=reason, seconds_remaining=max(pttl, 1) / 1000, day=day or None)


async def close_breaker(store: RedisStore, reason: str | None = None) -> bool:
    """Close the breaker; with ``reason``, only a breaker opened for that reason.

    Concurrency: compare-and-delete in one script, so a replica closing its ``"upstream"``
    breaker after a good probe never closes a ``"quota"`` breaker another replica just opened.

    Returns:
        Whether a breaker was closed.

    Raises:
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    reply = await store.run_script(
        _CLOSE_SCRIPT, [_breaker_key(store)], [reason or ""], what="quota"
    )
    return reply == 1


async def try_probe(store: RedisStore, seconds: int) -> bool:
    """Take the half-open probe lock for ``seconds`` (``SET NX EX``); True for the one winner.

    The lock expires by itself, so a probe that dies without reporting lets another replica
    probe after ``seconds``.

    Raises:
        ValueError: Fewer than one second.
        RedisUnavailable: Redis is down or too slow.
    """
    if seconds < 1:
        raise ValueError(f"seconds must be at least 1, not {seconds}")
    with store.fail_fast():
        created = await store.client.set(
            _probe_key(store), b"1", condition=PureToken.NX, ex=seconds
        )
    return bool(created)


async def end_probe(store: RedisStore) -> None:
    """Release the probe lock (the probe reported its outcome).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        await store.client.delete([_probe_key(store)])
