"""Rate-limit buckets: GCRA (generic cell rate algorithm) in Redis, and the same in-process.

GCRA keeps one number per bucket, the theoretical arrival time (TAT): the instant at which the
bucket would be empty again. A request of ``cost`` units moves the TAT ``cost * period / limit``
later; it is allowed while the new TAT stays within ``period`` of now. So a fresh bucket admits
exactly ``limit`` units at once, then one unit every ``period / limit`` seconds.

``gcra_check`` runs the whole read-decide-write step as ONE Lua script, so concurrent requests
from any number of replicas never interleave on a bucket, and it reads the clock with
``redis.call('TIME')``, so replicas with skewed clocks still agree. Each bucket key expires when
its bucket is full again: Redis holds nothing forever.

``LocalGcra`` is the same algorithm in process memory, the per-replica fallback while Redis is
unavailable. It is bounded (least recently used buckets are dropped first).

coredis notes: the script is a ``coredis.commands.Script`` built once, unbound, and run with
``client=store.client``: it sends EVALSHA and, on ``NOSCRIPT`` (Redis restarted or its script
cache was flushed), SCRIPT LOAD then EVALSHA again, all inside the same ``fail_fast()``
deadline. The SHA1 is computed locally; building the object does not contact Redis.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs
from coredis.commands import Script

from store.redis import RedisStore, RedisUnavailable

__all__ = ["MAX_LOCAL_KEYS", "MIN_INTERVAL", "GcraResult", "LocalGcra", "gcra_check"]

# Why 10,000: an entry is ~200 bytes (key, float, LRU links), so the fallback stays ~2 MB per
# process, and 10,000 distinct clients within one window is far beyond our traffic; past it
# the least recently seen client loses its history (it gets a fresh bucket), not the others.
MAX_LOCAL_KEYS = 10_000
# Why 1 µs: timestamps are doubles (µs since the epoch in Redis, seconds of monotonic time
# here); a burst of `limit` requests at the same instant must not be refused its last unit
# because `limit` additions of period/limit rounded up by a few ulps.
_SLACK_S = 1e-6
# Why at most 10,000 units a second: with a 1 µs slack, a 100 µs emission interval keeps the
# rounding under 1 % of one unit. Our limits are a few per second at most.
MIN_INTERVAL = 1e-4

# KEYS[1] bucket; ARGV[1] emission interval (µs a unit), ARGV[2] window (µs), ARGV[3] cost.
# Returns {allowed 0/1, remaining, retry_after µs, reset_after µs} (integers).
# The TAT is stored with %.17g: Lua's tostring keeps 14 digits, too few for µs since 1970.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local slack = 1
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval * cost
local diff = now - (new_tat - window)
if diff < -slack then
  local remaining = math.floor((now - (tat - window) + slack) / interval)
  return {0, remaining, math.ceil(-diff), math.ceil(tat - now)}
end
local reset_after = new_tat - now
redis.call('SET', KEYS[1], string.format('%.17g', new_tat),
  'PX', math.max(1, math.ceil(reset_after / 1000)))
return {1, math.floor((diff + slack) / interval), 0, math.ceil(reset_after)}
"""
_GCRA_SCRIPT: Script[bytes] = Script(script=GCRA_LUA)


@attrs.frozen
class GcraResult:
    """The outcome of one GCRA check.

    Attributes:
        allowed: Whether the request may proceed (its cost was charged only if so).
        remaining: Units that could still be spent right now (after this request if allowed).
        retry_after: Seconds until this request would be allowed; 0 when allowed.
        reset_after: Seconds until the bucket is full again (``limit`` units available).
    """

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float


def _validate(limit: int, period: float, cost: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if not (math.isfinite(period) and period > 0):
        raise ValueError(f"period must be a positive number of seconds, not {period}")
    if period / limit < MIN_INTERVAL:
        raise ValueError(f"{limit} per {period} s is too fast (at most 10,000 a second)")
    if not 1 <= cost <= limit:
        raise ValueError(f"cost must be between 1 and the limit ({limit}), not {cost}")


async def gcra_check(
    store: RedisStore, key: str, *, limit: int, period: float, cost: int = 1
) -> GcraResult:
    """Charge ``cost`` units to the bucket ``key`` if it has them, atomically, in Redis.

    Args:
        store: The Redis store; the bucket is ``store.key("rl", key)``.
        key: The bucket name (e.g. ``"<policy>:<client hash>"``).
        limit: Units the bucket holds; a full bucket admits this many at once.
        period: Seconds for an empty bucket to refill completely.
        cost: Units this request takes.

    Returns:
        The decision, computed with Redis' clock.

    Raises:
        ValueError: The limit, period or cost are out of range (``cost > limit`` could never
            be allowed).
        RedisUnavailable: Redis did not answer within the store's timeouts, or refused to run
            the script (READONLY after a failover, OOM, BUSY, ...).
    """
    _validate(limit, period, cost)
    return await _run_gcra(_GCRA_SCRIPT, store, key, limit=limit, period=period, cost=cost)


async def _run_gcra(
    script: Script[bytes], store: RedisStore, key: str, *, limit: int, period: float, cost: int
) -> GcraResult:
    args = [repr(period * 1e6 / limit), repr(period * 1e6), str(cost)]
    reply = await store.run_script(script, [store.key("rl", key)], args, what="rate-limit")
    if not (isinstance(reply, list) and len(reply) == 4 and all(isinstance(v, int) for v in reply)):
        raise RedisUnavailable(f"unexpected reply from the rate-limit script: {reply!r}")
    allowed, remaining, retry_us, reset_us = reply
    return GcraResult(
        allowed=allowed == 1,
        remaining=max(0, min(limit, remaining)),
        retry_after=retry_us / 1e6,
        reset_after=max(0, reset_us) / 1e6,
    )


def _decide(
    tat: float, now: float, *, limit: int, period: float, cost: int
) -> tuple[GcraResult, float | None]:
    """GCRA in plain Python (the Lua script's twin). Returns the result and the new TAT."""
    interval = period / limit
    tat = max(tat, now)
    new_tat = tat + interval * cost
    diff = now - (new_tat - period)
    if diff < -_SLACK_S:
        remaining = math.floor((now - (tat - period) + _SLACK_S) / interval)
        return GcraResult(False, max(0, min(limit, remaining)), -diff, tat - now), None
    remaining = math.floor((diff + _SLACK_S) / interval)
    return GcraResult(True, max(0, min(limit, remaining)), 0.0, new_tat - now), new_tat


class LocalGcra:
    """GCRA buckets in this process's memory, for when Redis is unavailable.

    Concurrency: ``check`` is synchronous (no await), so under trio each check is atomic with
    respect to other tasks; it must not be called from worker threads.

    Args:
        max_keys: Buckets kept at most; the least recently used is dropped past it.
        clock: Seconds from a monotonic clock (injectable for tests).
    """

    def __init__(
        self, *, max_keys: int = MAX_LOCAL_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self._max_keys = max_keys
        self._clock = clock
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        """The number of buckets held (full buckets may linger until evicted or reused)."""
        return len(self._tats)

    def check(self, key: str, *, limit: int, period: float, cost: int = 1) -> GcraResult:
        """Charge ``cost`` units to the bucket ``key`` if it has them.

        Args:
            key: The bucket name.
            limit: Units the bucket holds.
            period: Seconds for an empty bucket to refill completely.
            cost: Units this request takes.

        Returns:
            The decision, computed with this process's clock.

        Raises:
            ValueError: The limit, period or cost are out of range.
        """
        _validate(limit, period, cost)
        now = self._clock()
        result, new_tat = _decide(
            self._tats.get(key, now), now, limit=limit, period=period, cost=cost
        )
        if new_tat is not None:
            self._tats[key] = new_tat
        if key in self._tats:
            # Refused clients count as recent too: an abuser must not age out while hammering.
            self._tats.move_to_end(key)
            if len(self._tats) > self._max_keys:
                self._tats.popitem(last=False)
        return result
