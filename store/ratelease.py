"""Token leases from a shared GCRA bucket: a replica takes several requests' worth at once.

A lease charges ``granted`` units to the bucket exactly as ``granted`` single GCRA checks
would (the TAT moves ``granted * period / limit`` later), in ONE atomic step, and hands the
units to the caller to spend in its own memory. Units are never created: whatever the number
of replicas, the units granted over any stretch of time are at most what one GCRA bucket
admits over it. Units a replica does not spend are not returned; they expire with its lease
(the caller's business, :mod:`smartpip.http.leases`), which can only under-admit.

A lease of ``want`` units grants ``min(want, available)``; with nothing available it grants 0
and says when one unit will be (``retry_after``), like a refused GCRA check.

``RedisLeases`` runs the step as one Lua script with Redis' clock (``TIME``), for a whole
batch of buckets at once (the settle loop's one command per interval), sharing the bucket keys
and encoding of :func:`store.ratelimit.gcra_check`, so both can act on one bucket.
``MemoryLeases`` is the same algorithm in process memory with an injectable clock: the twin
the rate limiter's tests use under ``trio.testing.MockClock``, where real I/O cannot run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio
from coredis.commands import Script

from store.ratelimit import MIN_INTERVAL
from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "MAX_BATCH",
    "LeaseGrant",
    "LeaseRequest",
    "MemoryLeases",
    "RedisLeases",
    "TokenLeases",
    "lease_units",
]

# Why 1 µs: as in store.ratelimit, a burst of `limit` units at one instant must not lose its
# last unit to the rounding of `limit` additions of period/limit.
_SLACK_S = 1e-6

# KEYS: the buckets; ARGV: for each, its emission interval (µs a unit), window (µs), want.
# Returns, for each, {granted, remaining after the grant, retry_after µs (0 if granted),
# reset_after µs}, flattened. One TIME for the whole batch: every bucket sees the same now.
LEASE_LUA = """
local slack = 1
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local window = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local available = math.floor((now - (tat - window) + slack) / interval)
  if available < 1 then
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, math.ceil(tat + interval - window - now))
    table.insert(out, math.ceil(tat - now))
  else
    local granted = math.min(want, available)
    local new_tat = tat + interval * granted
    local reset_after = new_tat - now
    redis.call('SET', key, string.format('%.17g', new_tat),
      'PX', math.max(1, math.ceil(reset_after / 1000)))
    table.insert(out, granted)
    table.insert(out, available - granted)
    table.insert(out, 0)
    table.insert(out, math.ceil(reset_after))
  end
end
return out
"""
_LEASE_SCRIPT: Script[bytes] = Script(script=LEASE_LUA)
# Why 256: a batch runs as one script, during which Redis serves nobody else; 256 buckets
# take well under a millisecond, and a settle with more is split into several calls.
MAX_BATCH = 256


@attrs.frozen
class LeaseRequest:
    """Up to ``want`` units from the bucket ``key`` holding ``limit`` units per ``period``."""

    key: str
    limit: int
    period: float
    want: int

    def __attrs_post_init__(self) -> None:
        _validate(self.limit, self.period, self.want)


@attrs.frozen
class LeaseGrant:
    """The outcome of one lease.

    Attributes:
        granted: Units handed over (charged to the bucket); 0 when none were available.
        remaining: Units still available in the bucket after the grant.
        retry_after: Seconds until one unit is available; 0 when something was granted.
        reset_after: Seconds until the bucket is full again.
    """

    granted: int
    remaining: int
    retry_after: float
    reset_after: float


class TokenLeases(Protocol):
    """Where the shared buckets live (Redis, or memory in tests)."""

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        """Take up to ``want`` units from each bucket at once (see the module doc), all in
        one atomic step; the grants come in the order of ``requests``.

        Raises:
            RedisUnavailable: the shared store did not answer (Redis only).
        """
        ...


def _validate(limit: int, period: float, want: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if not (math.isfinite(period) and period > 0):
        raise ValueError(f"period must be a positive number of seconds, not {period}")
    if period / limit < MIN_INTERVAL:
        raise ValueError(f"{limit} per {period} s is too fast (at most 10,000 a second)")
    if not 1 <= want <= limit:
        raise ValueError(f"want must be between 1 and the limit ({limit}), not {want}")


def lease_units(tat: float, now: float, request: LeaseRequest) -> tuple[LeaseGrant, float]:
    """The lease step in plain Python (the Lua script's twin). Returns the grant and new TAT."""
    limit, period = request.limit, request.period
    interval = period / limit
    tat = max(tat, now)
    available = min(limit, math.floor((now - (tat - period) + _SLACK_S) / interval))
    if available < 1:
        return LeaseGrant(0, 0, tat + interval - period - now, tat - now), tat
    granted = min(request.want, available)
    new_tat = tat + interval * granted
    return LeaseGrant(granted, available - granted, 0.0, new_tat - now), new_tat


class RedisLeases:
    """Leases from the GCRA buckets in Redis (``store.key("rl", key)``): one script call per
    batch of up to :data:`MAX_BATCH` buckets.

    A batch touches several keys in one script: fine on one Redis (or a replicated one); on
    Redis Cluster it would have to be split by hash slot first.

    Args:
        store: The Redis store.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        """See :meth:`TokenLeases.lease`; computed with Redis' clock."""
        grants: list[LeaseGrant] = []
        for start in range(0, len(requests), MAX_BATCH):
            grants += await self._batch(requests[start : start + MAX_BATCH])
        return grants

    async def _batch(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        store = self.store
        keys = [store.key("rl", r.key) for r in requests]
        args: list[str] = []
        for r in requests:
            args += [repr(r.period * 1e6 / r.limit), repr(r.period * 1e6), str(r.want)]
        reply = await store.run_script(_LEASE_SCRIPT, keys, args, what="rate-limit lease")
        if not (
            isinstance(reply, list)
            and len(reply) == 4 * len(requests)
            and all(isinstance(v, int) for v in reply)
        ):
            raise RedisUnavailable(f"unexpected reply from the rate-limit lease script: {reply!r}")
        return [
            LeaseGrant(
                granted=max(0, min(r.want, reply[4 * n])),
                remaining=max(0, min(r.limit, reply[4 * n + 1])),
                retry_after=max(0, reply[4 * n + 2]) / 1e6,
                reset_after=max(0, reply[4 * n + 3]) / 1e6,
            )
            for n, r in enumerate(requests)
        ]


class MemoryLeases:
    """The same buckets in this process's memory, on an injectable clock (tests, MockClock).

    Shared by several limiters it stands for one Redis shared by several replicas. ``calls``
    counts the batches asked for (a round trip each, were this Redis).

    Args:
        clock: Seconds (``trio.current_time`` under the mock clock).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self.calls = 0

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        """See :meth:`TokenLeases.lease`."""
        self.calls += 1
        await trio.lowlevel.checkpoint()  # a round trip would let other tasks run
        now = self._clock()
        grants = []
        for request in requests:
            grant, tat = lease_units(self._tats.get(request.key, now), now, request)
            self._tats[request.key] = tat
            grants.append(grant)
        return grants
