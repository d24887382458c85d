"""Token leases from a shared GCRA bucket: a replica takes several requests' worth at once.

A lease charges ``granted`` units to the bucket exactly as ``granted`` single GCRA checks
would (the TAT moves ``granted * period / limit`` later), in ONE atomic step, and hands the
units to the caller to spend in its own memory. Units are never created: whatever the number
of replicas, the units granted over any stretch of time are at most what one GCRA bucket
admits over it.

**Returning units.** The same step may first give back ``refund`` units of the caller's last
lease of the bucket. It must leave the bucket exactly as if those units had never been leased,
or admit less; never more (had the bucket been refilled to full meanwhile without them, or had
another operation seen a different bucket, subtracting them now would overshoot). Every write
stamps the bucket with a new ``version`` (strictly increasing, kept past the key's expiry
because it is at least Redis' clock in µs) and, when it applies a refund, records that version
too; each grant returns the version and the TAT it left. A refund is applied

- in full when the bucket's version is still the lease's (nothing happened since);
- else, when no refund was applied after the lease, for as many units as the bucket could not
  have refilled since: ``floor((tat_at_lease - now) / interval)``. Without refunds the TAT only
  grows, so every operation since saw a TAT of at least ``tat_at_lease``, and without those
  units at least ``now``: no refill to full was hidden, and subtracting them is exact;
- otherwise not at all: the units are lost, which can only admit fewer.

A lease of ``want`` units grants ``min(want, available)``; with nothing available it grants 0
and says when one unit will be (``retry_after``), like a refused GCRA check. ``want`` 0 only
gives back the refund.

``RedisLeases`` runs the step as one Lua script with Redis' clock (``TIME``), for a whole batch
of buckets at once (the settle loop's one command per interval); a bucket is a hash (``t``:
the TAT in µs, ``v``: the version, ``r``: the last refund's version) under
``store.key("rl", "lease", key)``, expiring when full. ``MemoryLeases`` is the same algorithm
in process memory with an injectable clock: the twin the rate limiter's tests use under
``trio.testing.MockClock``, where real I/O cannot run.
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

# KEYS: the buckets; ARGV: for each, its emission interval (µs a unit), window (µs), want,
# refund, and the version and TAT (µs) of the lease the refund returns units of. Returns, for
# each, {granted, remaining after the grant, retry_after µs (0 if granted), reset_after µs,
# version, TAT µs (floored)}, flattened. One TIME for the whole batch.
LEASE_LUA = """
local slack = 1
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local out = {}
for i, key in ipairs(KEYS) do
  local base = 6 * (i - 1)
  local interval = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local want = tonumber(ARGV[base + 3])
  local refund = tonumber(ARGV[base + 4])
  local state = redis.call('HMGET', key, 't', 'v', 'r')
  local tat = tonumber(state[1]) or now
  local version = tonumber(state[2]) or 0
  local refunded_at = tonumber(state[3]) or 0
  local changed = false
  local give = 0
  if refund > 0 then
    if state[2] == ARGV[base + 5] then
      give = refund
    elseif refunded_at <= tonumber(ARGV[base + 5]) then
      give = math.min(refund, math.floor((tonumber(ARGV[base + 6]) - now) / interval))
    end
  end
  if give > 0 then
    tat = tat - interval * give
    changed = true
  end
  if tat < now then
    tat = now
  end
  local available = math.floor((now - (tat - window) + slack) / interval)
  local granted = 0
  if want > 0 and available >= 1 then
    granted = math.min(want, available)
    tat = tat + interval * granted
    changed = true
  end
  if changed then
    version = math.max(version + 1, now)
    if give > 0 then
      refunded_at = version
    end
    if tat > now then
      redis.call('HSET', key, 't', string.format('%.17g', tat), 'v', string.format('%d', version),
        'r', string.format('%d', refunded_at))
      redis.call('PEXPIRE', key, math.max(1, math.ceil((tat - now) / 1000)))
    else
      redis.call('DEL', key)
    end
  end
  table.insert(out, granted)
  table.insert(out, available - granted)
  if granted == 0 and want > 0 then
    table.insert(out, math.ceil(tat + interval - window - now))
  else
    table.insert(out, 0)
  end
  table.insert(out, math.ceil(tat - now))
  table.insert(out, version)
  table.insert(out, math.floor(tat))
end
return out
"""
_LEASE_SCRIPT: Script[bytes] = Script(script=LEASE_LUA)
# Why 256: a batch runs as one script, during which Redis serves nobody else; 256 buckets
# take well under a millisecond, and a settle with more is split into several calls.
MAX_BATCH = 256


@attrs.frozen
class LeaseRequest:
    """Give back ``refund`` units of the lease that left the bucket at ``version`` and ``tat``
    (µs in Redis, the clock's unit in memory), then take up to ``want`` units of the bucket
    ``key`` holding ``limit`` units per ``period``."""

    key: str
    limit: int
    period: float
    want: int
    refund: int = 0
    version: int = 0
    tat: int = 0

    def __attrs_post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, not {self.limit}")
        if not (math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"period must be a positive number of seconds, not {self.period}")
        if self.period / self.limit < MIN_INTERVAL:
            raise ValueError(f"{self.limit} per {self.period} s is too fast (10,000 a second)")
        if not 0 <= self.want <= self.limit:
            raise ValueError(
                f"want must be between 0 and the limit ({self.limit}), not {self.want}"
            )
        if not 0 <= self.refund <= self.limit:
            raise ValueError(f"refund must be between 0 and the limit, not {self.refund}")


@attrs.frozen
class LeaseGrant:
    """The outcome of one lease.

    Attributes:
        granted: Units handed over (charged to the bucket); 0 when none were available.
        remaining: Units still available in the bucket after the grant.
        retry_after: Seconds until one unit is available, when ``want`` got nothing; else 0.
        reset_after: Seconds until the bucket is full again.
        version: The bucket's version after this step: what a later refund must name.
        tat: The bucket's TAT after this step (µs in Redis): what a later refund must name.
    """

    granted: int
    remaining: int
    retry_after: float
    reset_after: float
    version: int
    tat: int = 0


class TokenLeases(Protocol):
    """Where the shared buckets live (Redis, or memory in tests)."""

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        """Refund and take units for each bucket (see the module doc), all in one atomic
        step; the grants come in the order of ``requests``.

        Raises:
            RedisUnavailable: the shared store did not answer (Redis only).
        """
        ...


@attrs.define
class _State:
    tat: float
    version: int = 0
    refunded_at: int = 0


def lease_units(state: _State, now: float, request: LeaseRequest, *, scale: float) -> LeaseGrant:
    """The lease step in plain Python (the Lua script's twin); updates ``state``.

    Versions here count steps; TATs are handed out as integers of ``1 / scale`` seconds.
    """
    limit, period = request.limit, request.period
    interval = period / limit
    tat, version = state.tat, state.version
    changed = False
    give = 0
    if request.refund > 0:
        if request.version == version:
            give = request.refund
        elif state.refunded_at <= request.version:
            give = min(request.refund, math.floor((request.tat / scale - now) / interval))
    if give > 0:
        tat -= interval * give
        changed = True
    tat = max(tat, now)
    available = min(limit, math.floor((now - (tat - period) + _SLACK_S) / interval))
    granted = 0
    if request.want > 0 and available >= 1:
        granted = min(request.want, available)
        tat += interval * granted
        changed = True
    if changed:
        version += 1
        state.tat, state.version = tat, version
        if give > 0:
            state.refunded_at = version
    retry = tat + interval - period - now if granted == 0 and request.want > 0 else 0.0
    return LeaseGrant(
        granted, available - granted, retry, tat - now, version, math.floor(tat * scale)
    )


class RedisLeases:
    """Leases from the buckets in Redis: one script call per batch of up to
    :data:`MAX_BATCH` buckets.

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
        keys = [store.key("rl", "lease", r.key) for r in requests]
        args: list[str] = []
        for r in requests:
            interval = r.period * 1e6 / r.limit
            args += [repr(interval), repr(r.period * 1e6), str(r.want), str(r.refund)]
            args += [str(r.version), str(r.tat)]
        reply = await store.run_script(_LEASE_SCRIPT, keys, args, what="rate-limit lease")
        if not (
            isinstance(reply, list)
            and len(reply) == 6 * len(requests)
            and all(isinstance(v, int) for v in reply)
        ):
            raise RedisUnavailable(f"unexpected reply from the rate-limit lease script: {reply!r}")
        return [
            LeaseGrant(
                granted=max(0, min(r.want, reply[6 * n])),
                remaining=max(0, min(r.limit, reply[6 * n + 1])),
                retry_after=max(0, reply[6 * n + 2]) / 1e6,
                reset_after=max(0, reply[6 * n + 3]) / 1e6,
                version=reply[6 * n + 4],
                tat=reply[6 * n + 5],
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
        self._buckets: dict[str, _State] = {}
        self.calls = 0

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        """See :meth:`TokenLeases.lease`."""
        self.calls += 1
        await trio.lowlevel.checkpoint()  # a round trip would let other tasks run
        now = self._clock()
        grants = []
        for request in requests:
            state = self._buckets.setdefault(request.key, _State(now))
            grants.append(lease_units(state, now, request, scale=1e6))
        return grants
