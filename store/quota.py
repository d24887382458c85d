"""The YouTube quota economy in Redis: the daily counter of quota units and searches.

Every replica spends from the same Google Cloud project, so the counter lives in
Redis and every read-decide-write step is ONE command or ONE Lua script: concurrent callers on
any number of replicas never interleave on them.

**Units.** The budget is counted in YouTube quota units, priced by :data:`UNIT_COSTS` (the
one cost table: ``search.list`` 100, ``videos.list`` 1, a playlist insert or creation 50).
Searches are a derived view: a budgeted search is :data:`SEARCH_UNITS` (``search.list`` plus the
``videos.list`` that fetches its details, 101 units), so a budget configured as N searches
is ``budget_units(N)`` = 101 N units, and "searches left" is the units left divided by 101.
A day of N ordinary searches thus allows exactly N, as when the budget counted searches;
retried calls (and, later, playlist writes) now spend the same budget.

Keys (all under ``RedisStore.key``; each has a TTL):

- ``quota:<day>``: a hash ``{searches, units}`` for one Pacific-time day (``YYYY-MM-DD``).
  The caller names the day, so these functions never look at a clock. Redis may lose it (a
  restart without persistence, an eviction, a flush): ``tasks.quota`` saves each day's
  usage to Postgres and :func:`restore_usage` puts it back, never lowering a counter.

The breaker and its probe lock: ``store.quota_breaker``.

Every function raises ``RedisUnavailable`` when Redis is down, too slow, or refuses a script
(READONLY, OOM, BUSY); deciding what to do then is the caller's business
(``smartpip.suggest.quota``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs
from coredis.commands import Script

from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "QUOTA_KEY_TTL_SECONDS",
    "SEARCH_UNITS",
    "UNIT_COSTS",
    "QuotaReservation",
    "QuotaUsage",
    "add_units",
    "add_units_if_counted",
    "budget_units",
    "day_key",
    "quota_usage",
    "reserve_search",
    "reserve_search_if_counted",
    "restore_usage",
    "searches_left",
]

#: What each YouTube Data API call costs in quota units (Google's price list), by the name the
#: YouTube client gives the call (``smartpip.youtube.CallHook``'s ``method``). The one table:
#: every count and every budget decision takes its prices from here.
UNIT_COSTS: Final[Mapping[str, int]] = MappingProxyType(
    {"search": 100, "videos": 1, "playlist_insert": 50, "playlist_create": 50}
)
#: Units of one budgeted search as suggest makes it: ``search.list``, then ``videos.list``.
SEARCH_UNITS: Final = UNIT_COSTS["search"] + UNIT_COSTS["videos"]


def budget_units(searches: int) -> int:
    """The day's budget in units for a budget configured in searches (``searches`` x 101)."""
    return searches * SEARCH_UNITS


def searches_left(budget: int, units: int) -> int:
    """Budgeted searches that still fit in ``budget`` units when ``units`` are spent (>= 0)."""
    return max(0, (budget - units) // SEARCH_UNITS)


# Why two days: a Pacific day lasts up to 25 h (fall-back), replicas' clocks may disagree by
# a little around midnight (a late write to yesterday's key must not create a key that lives
# forever or vanish early), and operators can still read yesterday's totals the next morning.
# The key is rewritten only during its own day, so it never lives past ~3 days in all.
QUOTA_KEY_TTL_SECONDS = 2 * 24 * 3600
# KEYS[1] day hash; ARGV[1] budget (units), ARGV[2] units the search needs room for,
# ARGV[3] units charged now, ARGV[4] TTL (s), ARGV[5] '1' to count on a missing key.
# Returns {allowed 0/1, searches used, units used}, or {-1, 0, 0} when the key is missing and
# ARGV[5] is not '1' (the caller restores the day first). Refusal writes nothing.
_RESERVE_LUA = """
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0, 0}
end
local budget = tonumber(ARGV[1])
local units = tonumber(redis.call('HGET', KEYS[1], 'units')) or 0
if units + tonumber(ARGV[2]) > budget then
  local used = tonumber(redis.call('HGET', KEYS[1], 'searches')) or 0
  return {0, used, units}
end
local used = redis.call('HINCRBY', KEYS[1], 'searches', 1)
units = redis.call('HINCRBY', KEYS[1], 'units', tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {1, used, units}
"""
_RESERVE_SCRIPT: Script[bytes] = Script(script=_RESERVE_LUA)

# KEYS[1] day hash; ARGV[1] units, ARGV[2] TTL (s), ARGV[3] '1' to count on a missing key.
# Returns the units used, or -1 when the key is missing and ARGV[3] is not '1'.
_ADD_UNITS_LUA = """
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local units = redis.call('HINCRBY', KEYS[1], 'units', tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return units
"""
_ADD_UNITS_SCRIPT: Script[bytes] = Script(script=_ADD_UNITS_LUA)

# KEYS[1] day hash; ARGV[1] searches, ARGV[2] units, ARGV[3] playlist units (saved in
# Postgres), ARGV[4] TTL (s). Raises each counter to the saved value if it is lower, never
# lowers one; creates the key if missing. Returns {searches, units, playlist units} after.
_RESTORE_LUA = """
local after = {}
for i, field in ipairs({'searches', 'units', 'playlist_units'}) do
  local saved = tonumber(ARGV[i])
  local now = tonumber(redis.call('HGET', KEYS[1], field)) or 0
  if saved > now then
    redis.call('HSET', KEYS[1], field, saved)
    now = saved
  elseif now == 0 then
    redis.call('HSET', KEYS[1], field, 0)
  end
  after[i] = now
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return after
"""
_RESTORE_SCRIPT: Script[bytes] = Script(script=_RESTORE_LUA)


@attrs.frozen
class QuotaReservation:
    """The outcome of one attempt to reserve a search.

    Attributes:
        allowed: Whether the search may be made (it was counted only if so).
        searches: Searches counted for the day, this one included when allowed.
        units: Units counted for the day.
        remaining: Budgeted searches still available today (derived from the units left).
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
        units: Quota units spent (priced by :data:`UNIT_COSTS`).
        playlist_units: The part of ``units`` playlist writes spent (their share is
            checked against it: ``store.playlist_quota``).
    """

    searches: int
    units: int
    playlist_units: int = 0


def day_key(store: RedisStore, day: str) -> str:
    """The key of ``day``'s hash (also spent from by ``store.playlist_quota``)."""
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
    need: int = SEARCH_UNITS,
    charge: int = UNIT_COSTS["search"],
    ttl_seconds: int = QUOTA_KEY_TTL_SECONDS,
) -> QuotaReservation:
    """Count one ``search.list`` call for ``day`` if ``need`` more units fit in ``budget``.

    The search needs room for itself and its ``videos.list`` (``need``, 101 units) but is
    charged only its ``search.list`` now (``charge``, 100): the ``videos.list`` is counted
    (``add_units``) when made, so ``units`` is what Google charged, and a day of N ordinary
    searches fits a budget of ``budget_units(N)`` exactly.

    Concurrency: one Lua script, so of any number of concurrent callers on any replicas
    exactly as many are allowed as fit. A refusal writes nothing.

    Args:
        store: The Redis store.
        day: The Pacific-time day, ``YYYY-MM-DD`` (see ``smartpip.suggest.quota.pacific_day``).
        budget: Units allowed in the day (``budget_units(searches)``).
        need: Units that must still fit for the search to be allowed.
        charge: Units counted now.
        ttl_seconds: TTL given to the day's key on every write.

    Returns:
        The decision and the day's totals.

    Raises:
        ValueError: A negative budget, need or charge, or a TTL under one second.
        RedisUnavailable: Redis is down, too slow, or refused the script. The reservation
            may or may not have been counted.
    """
    reservation = await _reserve(store, day, (budget, need, charge, ttl_seconds), create=True)
    if reservation is None:  # a creating call never answers "missing"
        raise RedisUnavailable("the quota script answered 'missing' to a creating call")
    return reservation


async def reserve_search_if_counted(
    store: RedisStore,
    day: str,
    *,
    budget: int,
    need: int = SEARCH_UNITS,
    charge: int = UNIT_COSTS["search"],
    ttl_seconds: int = QUOTA_KEY_TTL_SECONDS,
) -> QuotaReservation | None:
    """:func:`reserve_search`, but only if the day's counter exists; None (nothing written)
    when it does not, so the caller can restore the day from Postgres first: a counter that
    is missing mid-day was lost by Redis (restart, eviction, flush).

    Raises:
        ValueError: As :func:`reserve_search`.
        RedisUnavailable: As :func:`reserve_search`.
    """
    return await _reserve(store, day, (budget, need, charge, ttl_seconds), create=False)


async def _reserve(
    store: RedisStore, day: str, numbers: tuple[int, int, int, int], *, create: bool
) -> QuotaReservation | None:
    budget, need, charge, ttl_seconds = numbers
    if min(budget, need, charge) < 0 or ttl_seconds < 1:
        raise ValueError(f"bad budget/need/charge/ttl: {budget}, {need}, {charge}, {ttl_seconds}")
    reply = await store.run_script(
        _RESERVE_SCRIPT,
        [day_key(store, day)],
        [*map(str, numbers), "1" if create else "0"],
        what="quota",
    )
    allowed, searches, used_units = _ints(reply, 3, "quota reservation")
    if allowed == -1:
        return None
    return QuotaReservation(
        allowed=allowed == 1,
        searches=searches,
        units=used_units,
        remaining=searches_left(budget, used_units),
    )


async def restore_usage(
    store: RedisStore, day: str, saved: QuotaUsage, ttl_seconds: int = QUOTA_KEY_TTL_SECONDS
) -> QuotaUsage:
    """Raise ``day``'s counters to ``saved`` (the usage kept in Postgres) where they are lower.

    Each field becomes ``max(redis, saved)``; a counter is never lowered, so restoring again,
    or late, or from an older save changes nothing. Creates the key (with its TTL) if Redis
    lost it, so reservations find the day restored.

    Concurrency: one script; reservations on other replicas never interleave with it.

    Returns:
        The day's usage after the restore.

    Raises:
        ValueError: Negative counts or a TTL under one second.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    if min(saved.searches, saved.units, saved.playlist_units) < 0 or ttl_seconds < 1:
        raise ValueError(f"bad usage/ttl: {saved}, {ttl_seconds}")
    reply = await store.run_script(
        _RESTORE_SCRIPT,
        [day_key(store, day)],
        [str(saved.searches), str(saved.units), str(saved.playlist_units), str(ttl_seconds)],
        what="quota",
    )
    searches, units, playlist_units = _ints(reply, 3, "quota restore")
    return QuotaUsage(searches=searches, units=units, playlist_units=playlist_units)


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
    added = await _add(store, day, units, ttl_seconds, create=True)
    if added is None:  # a creating call never answers "missing"
        raise RedisUnavailable("the add-units script answered 'missing' to a creating call")
    return added


async def add_units_if_counted(
    store: RedisStore, day: str, units: int, ttl_seconds: int = QUOTA_KEY_TTL_SECONDS
) -> int | None:
    """:func:`add_units`, but only if the day's counter exists; None (nothing written) when
    it does not, so the caller can restore the day first (as :func:`reserve_search_if_counted`).

    Raises:
        ValueError: As :func:`add_units`.
        RedisUnavailable: As :func:`add_units`.
    """
    return await _add(store, day, units, ttl_seconds, create=False)


async def _add(
    store: RedisStore, day: str, units: int, ttl_seconds: int, *, create: bool
) -> int | None:
    if units < 0 or ttl_seconds < 1:
        raise ValueError(f"bad units/ttl: {units}, {ttl_seconds}")
    reply = await store.run_script(
        _ADD_UNITS_SCRIPT,
        [day_key(store, day)],
        [str(units), str(ttl_seconds), "1" if create else "0"],
        what="quota",
    )
    if not isinstance(reply, int):
        raise RedisUnavailable(f"unexpected reply from the add-units script: {reply!r}")
    return None if reply == -1 else reply


async def quota_usage(store: RedisStore, day: str) -> QuotaUsage:
    """The searches and units (and the playlists' part of them) counted for ``day`` (zeros
    for a day with none).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    fields = ["searches", "units", "playlist_units"]
    with store.fail_fast():
        searches, units, playlist = await store.client.hmget(day_key(store, day), fields)
    return QuotaUsage(
        searches=int(searches or 0), units=int(units or 0), playlist_units=int(playlist or 0)
    )
