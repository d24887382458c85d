"""The YouTube quota economy in Redis: the daily counter, the shared breaker and its probe lock.

Every replica spends from the same Google Cloud project, so the counter and the breaker live in
Redis and every read-decide-write step is ONE command or ONE Lua script: concurrent callers on
any number of replicas never interleave on them.

Keys (all under ``RedisStore.key``; each has a TTL):

- ``quota:<day>``: a hash ``{searches, units}`` for one Pacific-time day (``YYYY-MM-DD``).
  The caller names the day, so these functions never look at a clock.
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
    "QUOTA_KEY_TTL_SECONDS",
    "BreakerState",
    "QuotaReservation",
    "QuotaUsage",
    "add_units",
    "breaker_state",
    "close_breaker",
    "end_probe",
    "open_breaker",
    "quota_usage",
    "reserve_search",
    "try_probe",
]

# Why two days: a Pacific day lasts up to 25 h (fall-back), replicas' clocks may disagree by
# a little around midnight (a late write to yesterday's key must not create a key that lives
# forever or vanish early), and operators can still read yesterday's totals the next morning.
# The key is rewritten only during its own day, so it never lives past ~3 days in all.
QUOTA_KEY_TTL_SECONDS = 2 * 24 * 3600
# The reasons the breaker knows; anything else is a programming error.
BREAKER_REASONS = frozenset({"quota", "upstream", "key_invalid"})

# KEYS[1] day hash; ARGV[1] budget, ARGV[2] units a search, ARGV[3] TTL (s).
# Returns {allowed 0/1, searches used, units used}. Refusal writes nothing.
_RESERVE_LUA = """
local budget = tonumber(ARGV[1])
local used = tonumber(redis.call('HGET', KEYS[1], 'searches')) or 0
if used >= budget then
  local units = tonumber(redis.call('HGET', KEYS[1], 'units')) or 0
  return {0, used, units}
end
used = redis.call('HINCRBY', KEYS[1], 'searches', 1)
local units = redis.call('HINCRBY', KEYS[1], 'units', tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, used, units}
"""
_RESERVE_SCRIPT: Script[bytes] = Script(script=_RESERVE_LUA)

# KEYS[1] day hash; ARGV[1] units, ARGV[2] TTL (s). Returns the units used.
_ADD_UNITS_LUA = """
local units = redis.call('HINCRBY', KEYS[1], 'units', tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return units
"""
_ADD_UNITS_SCRIPT: Script[bytes] = Script(script=_ADD_UNITS_LUA)

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
class QuotaReservation:
    """The outcome of one attempt to reserve a search.

    Attributes:
        allowed: Whether the search may be made (it was counted only if so).
        searches: Searches counted for the day, this one included when allowed.
        units: Units counted for the day.
        remaining: Searches still available today after this one (never negative).
    """

    allowed: bool
    searches: int
    units: int
    remaining: int


@attrs.frozen
class QuotaUsage:
    """What a day has spent so far.

    Attributes:
        searches: ``search.list`` calls reserved.
        units: Quota units spent (100 a search, 1 a ``videos.list``).
    """

    searches: int
    units: int


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


def _day_key(store: RedisStore, day: str) -> str:
    return store.key("quota", day)


def _ints(reply: object, n: int, what: str) -> list[int]:
    if not (isinstance(reply, list) and len(reply) == n and all(isinstance(v, int) for v in reply)):
        raise RedisUnavailable(f"unexpected reply from the {what} script: {reply!r}")
    return reply


async def reserve_search(
    store: RedisStore,
    day: str,
    *,
    budget: int,
    units: int = 100,
    ttl_seconds: int = QUOTA_KEY_TTL_SECONDS,
) -> QuotaReservation:
    """Count one ``search.list`` call for ``day`` if fewer than ``budget`` were made, atomically.

    Concurrency: one Lua script, so of any number of concurrent callers on any replicas
    exactly ``budget - used`` are allowed. A refusal writes nothing.

    Args:
        store: The Redis store.
        day: The Pacific-time day, ``YYYY-MM-DD`` (see ``smartpip.suggest.quota.pacific_day``).
        budget: Searches allowed in the day.
        units: Units one search costs.
        ttl_seconds: TTL given to the day's key on every write.

    Returns:
        The decision and the day's totals.

    Raises:
        ValueError: A negative budget or units, or a TTL under one second.
        RedisUnavailable: Redis is down, too slow, or refused the script. The reservation
            may or may not have been counted.
    """
    if budget < 0 or units < 0 or ttl_seconds < 1:
        raise ValueError(f"bad budget/units/ttl: {budget}, {units}, {ttl_seconds}")
    reply = await store.run_script(
        _RESERVE_SCRIPT,
        [_day_key(store, day)],
        [str(budget), str(units), str(ttl_seconds)],
        what="quota",
    )
    allowed, searches, used_units = _ints(reply, 3, "quota reservation")
    return QuotaReservation(
        allowed=allowed == 1,
        searches=searches,
        units=used_units,
        remaining=max(0, budget - searches),
    )


async def add_units(
    store: RedisStore, day: str, units: int, ttl_seconds: int = QUOTA_KEY_TTL_SECONDS
) -> int:
    """Count ``units`` spent on ``day`` by calls other than searches (``videos.list``: 1 each).

    Concurrency: HINCRBY and EXPIRE in one script; concurrent calls add up exactly.

    Returns:
        The day's units after the addition.

    Raises:
        ValueError: Negative units or a TTL under one second.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    if units < 0 or ttl_seconds < 1:
        raise ValueError(f"bad units/ttl: {units}, {ttl_seconds}")
    reply = await store.run_script(
        _ADD_UNITS_SCRIPT, [_day_key(store, day)], [str(units), str(ttl_seconds)], what="quota"
    )
    if not isinstance(reply, int):
        raise RedisUnavailable(f"unexpected reply from the add-units script: {reply!r}")
    return reply


async def quota_usage(store: RedisStore, day: str) -> QuotaUsage:
    """The searches and units counted for ``day`` (zeros for a day with none).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        searches, units = await store.client.hmget(_day_key(store, day), ["searches", "units"])
    return QuotaUsage(searches=int(searches or 0), units=int(units or 0))


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
