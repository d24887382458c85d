"""The playlist writes' share of the daily YouTube quota, and each user's daily cap, in Redis.

Playlist writes (``playlists.insert`` and ``playlistItems.insert``, 50 units each, priced by
``store.quota.UNIT_COSTS``) spend the same Pacific day's units as suggest's searches: the hash
``quota:<day>`` of :mod:`store.quota`, whose ``units`` field every search reservation checks.
Playlists add their own field, ``playlist_units``, and a write is allowed only while

- ``playlist_units + cost`` fits the playlist sub-budget (a small share of the day's budget,
  ``SMARTPIP_PLAYLIST_SHARE``): writes can never spend more than that, so searches always keep
  at least the rest of the budget;
- ``units + cost`` fits the day's whole budget: searches already spent are never overdrawn;
- for the first call of a request, the user's writes that day (``playlist:user:<day>:<id>``)
  stay within the per-user cap (``SMARTPIP_PLAYLIST_USER_DAILY_LIMIT``).

Concurrency: one Lua script decides and counts, so concurrent writers on any replicas never
overspend either budget nor a user's cap. A refusal writes nothing. Every key has a TTL
(two days, as the day's counter).

``playlist_units`` is saved to Postgres by the ``quota`` job with ``searches`` and ``units``
(``quota_days``) and restored with them when Redis loses the day: what is lost is what was
spent since the last save (the job runs every minute), as for searches.

Every function raises ``RedisUnavailable`` when Redis is down, too slow or refuses a script.
"""

from __future__ import annotations

import enum
import uuid

import attrs
from coredis.commands import Script

from store.quota import QUOTA_KEY_TTL_SECONDS, day_key
from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "PlaylistGrant",
    "PlaylistUsage",
    "Verdict",
    "exhaust_playlist_budget",
    "playlist_usage",
    "reserve_playlist_units",
]


class Verdict(enum.IntEnum):
    """The outcome of a reservation (the script's first reply)."""

    MISSING = -1  # the day's counter is missing and the call asked not to create it
    SHARE_SPENT = 0  # the playlist sub-budget has no room
    ALLOWED = 1
    DAY_SPENT = 2  # the day's whole budget has no room
    USER_CAP = 3  # the user reached their daily writes


# KEYS[1] the day's hash, KEYS[2] the user's day counter.
# ARGV[1] day budget (units), ARGV[2] playlist budget (units), ARGV[3] units of this call,
# ARGV[4] user cap (writes), ARGV[5] '1' to count a user write, ARGV[6] TTL (s),
# ARGV[7] '1' to count on a missing day hash.
# Returns {verdict, playlist units, user writes} (after counting when allowed).
_RESERVE_LUA = """
if ARGV[7] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0, 0}
end
local cost = tonumber(ARGV[3])
local spent = tonumber(redis.call('HGET', KEYS[1], 'playlist_units')) or 0
local total = tonumber(redis.call('HGET', KEYS[1], 'units')) or 0
local writes = tonumber(redis.call('GET', KEYS[2])) or 0
if spent + cost > tonumber(ARGV[2]) then
  return {0, spent, writes}
end
if total + cost > tonumber(ARGV[1]) then
  return {2, spent, writes}
end
if ARGV[5] == '1' then
  if writes + 1 > tonumber(ARGV[4]) then
    return {3, spent, writes}
  end
  writes = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
end
redis.call('HINCRBY', KEYS[1], 'units', cost)
spent = redis.call('HINCRBY', KEYS[1], 'playlist_units', cost)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, spent, writes}
"""
_RESERVE_SCRIPT: Script[bytes] = Script(script=_RESERVE_LUA)

# KEYS[1] the day's hash; ARGV[1] playlist budget, ARGV[2] TTL. Raises playlist_units to the
# budget (never lowers it). Returns playlist_units after.
_EXHAUST_LUA = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'playlist_units')) or 0
if spent < tonumber(ARGV[1]) then
  spent = tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'playlist_units', spent)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return spent
"""
_EXHAUST_SCRIPT: Script[bytes] = Script(script=_EXHAUST_LUA)


@attrs.frozen
class PlaylistGrant:
    """The outcome of one reservation.

    Attributes:
        verdict: Allowed, or which limit refused it (None of it was counted then).
        playlist_units: Units the day's playlist writes have spent (this call included when
            allowed).
        user_writes: The user's writes counted that day.
    """

    verdict: Verdict
    playlist_units: int
    user_writes: int


@attrs.frozen
class PlaylistUsage:
    """What a day has spent: the playlists' units and all units (searches included)."""

    playlist_units: int
    units: int


def _user_key(store: RedisStore, day: str, user_id: uuid.UUID) -> str:
    return store.key("playlist", "user", day, str(user_id))


async def reserve_playlist_units(
    store: RedisStore,
    day: str,
    user_id: uuid.UUID,
    *,
    cost: int,
    day_budget: int,
    playlist_budget: int,
    user_limit: int,
    count_user: bool,
    create: bool = True,
    ttl_seconds: int = QUOTA_KEY_TTL_SECONDS,
) -> PlaylistGrant:
    """Count ``cost`` units of a playlist call for ``day`` if every limit allows it.

    Args:
        store: The Redis store.
        day: The Pacific day (``YYYY-MM-DD``).
        user_id: The user the write is for.
        cost: The call's units (``UNIT_COSTS``).
        day_budget: The day's whole budget in units (searches and playlists).
        playlist_budget: The playlists' share of it, in units.
        user_limit: Writes a user may make in a day.
        count_user: Count this call as one of the user's writes (the first call of a request).
        create: Count even when the day's hash is missing; when false such a call answers
            :attr:`Verdict.MISSING` and writes nothing (the caller restores the day first).
        ttl_seconds: TTL of both keys.

    Raises:
        ValueError: Negative numbers or a TTL under one second.
        RedisUnavailable: Redis is down, too slow, or refused the script; the call may or
            may not have been counted.
    """
    if min(cost, day_budget, playlist_budget, user_limit) < 0 or ttl_seconds < 1:
        raise ValueError("budgets, cost and limit must be >= 0 and the TTL >= 1 s")
    reply = await store.run_script(
        _RESERVE_SCRIPT,
        [day_key(store, day), _user_key(store, day, user_id)],
        [
            str(day_budget),
            str(playlist_budget),
            str(cost),
            str(user_limit),
            "1" if count_user else "0",
            str(ttl_seconds),
            "1" if create else "0",
        ],
        what="playlist quota",
    )
    if not (isinstance(reply, list) and len(reply) == 3 and all(isinstance(v, int) for v in reply)):
        raise RedisUnavailable(f"unexpected reply from the playlist quota script: {reply!r}")
    verdict, spent, writes = reply
    return PlaylistGrant(Verdict(verdict), spent, writes)


async def exhaust_playlist_budget(
    store: RedisStore, day: str, playlist_budget: int, ttl_seconds: int = QUOTA_KEY_TTL_SECONDS
) -> int:
    """YouTube said the project's quota is spent: mark the day's playlist share as spent.

    Returns:
        The day's playlist units after.

    Raises:
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    reply = await store.run_script(
        _EXHAUST_SCRIPT,
        [day_key(store, day)],
        [str(playlist_budget), str(ttl_seconds)],
        what="playlist quota",
    )
    if not isinstance(reply, int):
        raise RedisUnavailable(f"unexpected reply from the playlist quota script: {reply!r}")
    return reply


async def playlist_usage(store: RedisStore, day: str) -> PlaylistUsage:
    """The day's playlist units and all units (zeros for a day with none).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        spent, units = await store.client.hmget(day_key(store, day), ["playlist_units", "units"])
    return PlaylistUsage(playlist_units=int(spent or 0), units=int(units or 0))
