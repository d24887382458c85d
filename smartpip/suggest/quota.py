"""The suggest quota gate: may this replica make a YouTube search now?

YouTube gives the project about 100 searches a day, reset at midnight Pacific time, so every
replica asks ``QuotaGate.reserve()`` before a ``search.list`` call and reports the outcome.
The gate combines:

- the shared **daily budget** (``store.quota.reserve_search`` on the Pacific day's counter):
  spent → the breaker opens with reason ``"quota"`` until midnight Pacific. The budget is
  configured in searches (``daily_budget``, the meaning ``SMARTPIP_SUGGEST_DAILY_BUDGET``
  always had) and decided in units: ``budget_units(daily_budget)``, 101 units a search
  (``search.list`` + ``videos.list``), so N ordinary searches still fit a budget of N, and
  retried calls spend the same budget (``store.quota`` explains the units);
- the **restore** of a day Redis lost: a reservation (or units added after a search) that
  finds the day's counter missing first calls ``restore(day)`` (``tasks.quota.restore_day``:
  the usage saved in Postgres put back, never lowering a counter), then counts. Postgres
  unavailable then: the counter starts from Redis alone (as before this existed) and the
  ``quota`` job restores it within a minute;
- the shared **breaker** (``store.quota_breaker``): ``"quota"`` (budget spent or YouTube said
  ``quotaExceeded``; until midnight Pacific), ``"upstream"`` (``failure_threshold``
  consecutive 5xx/timeouts; a cool-down, then one half-open probe across all replicas),
  ``"key_invalid"`` (YouTube rejected the API key; ``key_invalid_seconds``, then one call
  finds out whether the key was fixed).

Half-open without a clock shared by replicas: an ``"upstream"`` breaker key lives
``cooldown_seconds + half_open_seconds``. While more than ``half_open_seconds`` remain it is
open; in its last ``half_open_seconds`` it is half-open: the one replica that wins
``try_probe`` makes the call, the others are refused. A good probe closes the breaker, a
failed one reopens it for a full cool-down; without traffic it closes by expiry.

Consecutive failures are counted **in this process** (not in Redis): counting costs no Redis
write per upstream call and keeps working while Redis is away; the breaker they open is
shared, so one replica tripping stops every replica. With R replicas at most
``R * failure_threshold`` failed calls happen before the breaker opens.

Redis unavailable: the gate never fails a request because of Redis. Every search costs
quota that cannot be counted while Redis is down, and the cache is off then (every request is
a miss), so "allow everything" would burn the day's quota in minutes and "refuse everything"
would take suggest down. The gate **allows up to ``redis_down_budget`` searches per process
and Pacific day** (counted locally), honours breakers this process opened itself (kept in a
local mirror), and refuses the rest with reason ``"redis"``. After a Redis failure it skips
Redis for ``redis_backoff`` seconds, then one caller probes it (``RedisBackoff``).

Concurrency: one trio task at a time; the local state changes only between awaits and is
never awaited across inconsistently, so no lock is needed. Not for worker threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import attrs

from smartpip.logs import get_logger
from smartpip.youtube import (
    PACIFIC,
    next_pacific_midnight,
    pacific_day,
    seconds_until_pacific_midnight,
)
from store.backoff import RedisBackoff
from store.errors import DatabaseUnavailable
from store.quota import (
    SEARCH_UNITS,
    QuotaReservation,
    QuotaUsage,
    add_units_if_counted,
    budget_units,
    quota_usage,
    reserve_search,
    reserve_search_if_counted,
)
from store.quota import (
    add_units as store_add_units,
)
from store.quota_breaker import (
    BreakerState,
    breaker_state,
    close_breaker,
    end_probe,
    open_breaker,
    try_probe,
)
from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "PACIFIC",
    "QuotaGate",
    "Refusal",
    "RefusalReason",
    "Reservation",
    "next_pacific_midnight",
    "pacific_day",
    "seconds_until_pacific_midnight",
]

log = get_logger(__name__)


RefusalReason = Literal["quota", "upstream", "key_invalid", "redis", "reserve"]

# Why 5 in a row: the client already retries a 5xx twice, so 5 failed calls are ~15 failed
# requests to Google; fewer would trip on a short blip, more would waste quota (every call,
# even a failed one, costs units).
DEFAULT_FAILURE_THRESHOLD = 5
# Why 60 s: YouTube backend errors are usually short; a minute costs little when cached and
# stale answers keep being served meanwhile.
DEFAULT_COOLDOWN_SECONDS = 60
# Why 5 min: long enough for traffic to bring a probe after the cool-down; without one the
# breaker closes by itself and failures are counted afresh.
DEFAULT_HALF_OPEN_SECONDS = 300
# Why 30 s: longer than a search plus videos.list with two retries each; a probe that dies
# without reporting lets another replica probe after this.
DEFAULT_PROBE_SECONDS = 30
# Why an hour: each retry with a bad key goes through reserve() and so counts as a search
# (Google charges it at least one unit); hourly, a broken key uses at most 24 of the day's
# searches, and a fixed key takes effect within the hour without touching Redis.
DEFAULT_KEY_INVALID_SECONDS = 3600
# Why 10 a process: a tenth of the daily budget; with a few replicas an hour-long Redis outage
# still leaves most of the day's quota, and users keep getting some answers.
DEFAULT_REDIS_DOWN_BUDGET = 10
# Why 5 s: each Redis failure costs a caller up to the command timeout (~0.75 s).
DEFAULT_REDIS_BACKOFF = 5.0
# Retry-After for the Redis-down refusal: Redis usually returns sooner than midnight.
_REDIS_DOWN_RETRY_AFTER = 60


def _today(state: BreakerState | None, day: str) -> BreakerState | None:
    """``state``, unless it is yesterday's quota breaker (this clock is past midnight already)."""
    if state is not None and state.reason == "quota" and state.day not in (None, day):
        return None
    return state


async def _restore_day(restore: Callable[[str], Awaitable[object]], day: str) -> None:
    """The day's counter is missing: put back what Postgres saved (if it answers)."""
    try:
        await restore(day)
    except DatabaseUnavailable as exc:
        log.warning(
            "suggest quota: the day's counter is missing and Postgres cannot restore it;"
            " counting from Redis alone until the quota job restores it",
            error=str(exc),
        )


@attrs.frozen
class Reservation:
    """A search may be made; report its outcome to the gate.

    Attributes:
        day: The Pacific day it was counted on.
        searches: Searches counted that day (this one included).
        remaining: Searches left that day.
        probe: This is the half-open probe: pass ``probe=True`` to ``upstream_failed`` or
            ``upstream_succeeded``.
        shared: False when Redis was unavailable and the search was counted in this
            process only (``searches``/``remaining`` then describe the local allowance).
    """

    day: str
    searches: int
    remaining: int
    probe: bool = False
    shared: bool = True


@attrs.frozen
class Refusal:
    """No search now.

    Attributes:
        reason: ``"quota"`` (budget spent or quotaExceeded), ``"upstream"`` (breaker after
            failures), ``"key_invalid"``, ``"redis"`` (Redis down and the local
            allowance spent), or ``"reserve"`` (only the reserve asked to be kept is left).
        retry_after: Seconds until asking again may succeed (for ``Retry-After``), at least 1.
    """

    reason: RefusalReason
    retry_after: int


class QuotaGate:
    """Whether to make a YouTube search now, shared across replicas through Redis.

    Args:
        store: The Redis store.
        daily_budget: Searches a Pacific day (decided as ``budget_units(daily_budget)`` units).
        restore: Restores a Pacific day's counter from Postgres (``tasks.quota.restore_day``);
            called when a reservation finds the day's key missing. None: a missing key is a
            fresh counter.
        clock: Wall-clock seconds since the epoch (the Pacific day and midnight).
        monotonic: Monotonic seconds (the Redis back-off).
        failure_threshold: Consecutive upstream failures (in this process) that open the
            breaker.
        cooldown_seconds: Seconds the ``"upstream"`` breaker stays fully open.
        half_open_seconds: Seconds after the cool-down during which one probe may go.
        probe_seconds: TTL of the probe lock.
        key_invalid_seconds: Seconds the ``"key_invalid"`` breaker stays open.
        redis_down_budget: Searches this process may make per Pacific day while Redis is
            unavailable.
        redis_backoff: Seconds Redis is skipped after it failed.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        daily_budget: int = 100,
        restore: Callable[[str], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS,
        half_open_seconds: int = DEFAULT_HALF_OPEN_SECONDS,
        probe_seconds: int = DEFAULT_PROBE_SECONDS,
        key_invalid_seconds: int = DEFAULT_KEY_INVALID_SECONDS,
        redis_down_budget: int = DEFAULT_REDIS_DOWN_BUDGET,
        redis_backoff: float = DEFAULT_REDIS_BACKOFF,
    ) -> None:
        if daily_budget < 0 or redis_down_budget < 0 or failure_threshold < 1:
            raise ValueError("budgets must be >= 0 and failure_threshold >= 1")
        if min(cooldown_seconds, half_open_seconds, probe_seconds, key_invalid_seconds) < 1:
            raise ValueError("breaker durations must be at least 1 s")
        self._store = store
        self._budget_units = budget_units(daily_budget)
        self._restore = restore
        self._clock = clock
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._half_open = half_open_seconds
        self._probe_seconds = probe_seconds
        self._key_invalid_seconds = key_invalid_seconds
        self._redis_down_budget = redis_down_budget
        self._redis = RedisBackoff(
            went_down="suggest quota: Redis unavailable; local allowance in use",
            came_back="suggest quota: Redis answers again",
            backoff=redis_backoff,
            clock=monotonic,
        )
        self._failures = 0
        # Breakers this process opened: (reason, wall-clock end); used while Redis is away.
        self._local_breaker: tuple[RefusalReason, float] | None = None
        self._local_day = ""
        self._local_used = 0
        self._last_reason: str | None = None

    @property
    def breaker_reason(self) -> str | None:
        """The breaker last seen open (``"quota"``, ``"upstream"``, ``"key_invalid"``), or None.

        For metrics and ``/v1/status``: ``"key_invalid"`` means suggest is down.
        """
        return self._last_reason

    @property
    def redis_down(self) -> bool:
        """The last Redis attempt failed (the gate runs on its local allowance)."""
        return self._redis.down

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def reserve(self, *, keep: int = 0) -> Reservation | Refusal:
        """Reserve one search, or say why not and for how long.

        Never raises because of Redis (see the module docstring).

        Args:
            keep: Searches that must still be left after this one (the suggest reserve, kept
                for queries asked more than once): when the budget has room for this search
                but not for ``keep`` more, the answer is ``Refusal("reserve", ...)``, nothing is
                counted and no breaker opens. Ignored on the local allowance (Redis down).
        """
        if keep < 0:
            raise ValueError("keep must be >= 0")
        now = self._now()
        day = pacific_day(now)
        ask, probing_redis = self._redis.route()
        if ask:
            try:
                result = await self._reserve_shared(now, day, keep)
            except RedisUnavailable as exc:
                self._redis.failed(exc)
            else:
                self._redis.succeeded()
                return result
            finally:
                if probing_redis:
                    self._redis.end_probe()
        return self._reserve_local(now, day)

    async def _reserve_shared(self, now: datetime, day: str, keep: int) -> Reservation | Refusal:
        state = _today(await breaker_state(self._store), day)
        self._last_reason = state.reason if state else None
        probe = False
        if state is not None:
            refusal = self._refusal_for(state, now)
            if refusal is not None:
                return refusal
            # Half-open "upstream" breaker: one replica probes, the others wait.
            if not await try_probe(self._store, self._probe_seconds):
                return Refusal("upstream", self._probe_seconds)
            probe = True
        reservation = await self._reserve_counted(day, SEARCH_UNITS * (1 + keep))
        if not reservation.allowed:
            if probe:
                await end_probe(self._store)
            if keep and reservation.units + SEARCH_UNITS <= self._budget_units:
                # Room for this search, not for the reserve: no breaker, the budget is not spent.
                return Refusal("reserve", seconds_until_pacific_midnight(now))
            retry_after = seconds_until_pacific_midnight(now)
            # Directly, not through the back-off: this may be the Redis back-off's probe. A
            # failure here falls back to the local path, where the mirror refuses.
            self._mirror("quota", retry_after)
            await open_breaker(self._store, "quota", retry_after, day=day)
            return Refusal("quota", retry_after)
        return Reservation(
            day=day, searches=reservation.searches, remaining=reservation.remaining, probe=probe
        )

    async def _reserve_counted(self, day: str, need: int) -> QuotaReservation:
        """Reserve on the day's counter, restoring it from Postgres first if Redis lost it."""
        budget, restore = self._budget_units, self._restore
        if restore is not None:
            reservation = await reserve_search_if_counted(
                self._store, day, budget=budget, need=need
            )
            if reservation is not None:
                return reservation
            await _restore_day(restore, day)
        return await reserve_search(self._store, day, budget=budget, need=need)

    async def _add_counted(self, day: str, units: int) -> int:
        """Add units to the day's counter, restoring it from Postgres first if Redis lost it
        (a search in flight when Redis restarted must not recreate an empty counter)."""
        restore = self._restore
        if restore is not None:
            added = await add_units_if_counted(self._store, day, units)
            if added is not None:
                return added
            await _restore_day(restore, day)
        return await store_add_units(self._store, day, units)

    def _refusal_for(self, state: BreakerState, now: datetime) -> Refusal | None:
        """The refusal an open breaker means; None for a half-open ``"upstream"`` one."""
        if state.reason == "quota":
            return Refusal("quota", seconds_until_pacific_midnight(now))
        if state.reason == "upstream":
            open_left = state.seconds_remaining - self._half_open
            return Refusal("upstream", max(1, math.ceil(open_left))) if open_left > 0 else None
        return Refusal("key_invalid", max(1, math.ceil(state.seconds_remaining)))

    def _reserve_local(self, now: datetime, day: str) -> Reservation | Refusal:
        wall = now.timestamp()
        if self._local_breaker is not None:
            reason, until = self._local_breaker
            if wall < until:
                if reason == "quota":
                    return Refusal("quota", seconds_until_pacific_midnight(now))
                return Refusal(reason, max(1, math.ceil(until - wall)))
            self._local_breaker = None
        if day != self._local_day:
            self._local_day, self._local_used = day, 0
        if self._local_used >= self._redis_down_budget:
            retry = min(_REDIS_DOWN_RETRY_AFTER, seconds_until_pacific_midnight(now))
            return Refusal("redis", retry)
        self._local_used += 1
        return Reservation(
            day=day,
            searches=self._local_used,
            remaining=self._redis_down_budget - self._local_used,
            shared=False,
        )

    def _mirror(self, reason: RefusalReason, seconds: int) -> None:
        """Remember a breaker this process opened, for while Redis is unavailable."""
        self._local_breaker = (reason, self._clock() + seconds)
        self._last_reason = reason

    async def _open(
        self,
        reason: RefusalReason,
        seconds: int,
        local_seconds: int | None = None,
        day: str | None = None,
    ) -> None:
        """Open the breaker in Redis (best effort) and, for ``local_seconds``, locally."""
        self._mirror(reason, seconds if local_seconds is None else local_seconds)
        await self._redis.attempt(open_breaker(self._store, reason, seconds, day=day))

    async def observe(self) -> QuotaUsage | None:
        """Refresh :attr:`breaker_reason` and return today's shared usage.

        For the periodic gauges and ``/v1/status``: a replica that makes no searches still
        learns that another one opened the breaker. While Redis is unavailable the reason
        comes from the breakers this process opened, and the usage is None.
        """
        now = self._now()
        state = await self._redis.attempt(breaker_state(self._store))
        if self._redis.down:
            local = self._local_breaker
            self._last_reason = local[0] if local and now.timestamp() < local[1] else None
            return None
        state = _today(state, pacific_day(now))
        self._last_reason = state.reason if state else None
        return await self._redis.attempt(quota_usage(self._store, pacific_day(now)))

    async def add_units(self, units: int = 1) -> None:
        """Count units of calls other than searches (``videos.list``: 1); best effort."""
        day = pacific_day(self._now())
        await self._redis.attempt(self._add_counted(day, units))

    async def usage(self) -> QuotaUsage | None:
        """Today's shared usage (for the quota gauges), or None while Redis is unavailable."""
        return await self._redis.attempt(quota_usage(self._store, pacific_day(self._now())))

    async def quota_exceeded(self) -> None:
        """YouTube answered ``quotaExceeded``: open the breaker until midnight Pacific."""
        self._failures = 0
        now = self._now()
        await self._open("quota", seconds_until_pacific_midnight(now), day=pacific_day(now))

    async def key_invalid(self) -> None:
        """YouTube rejected the API key: open the breaker with reason ``"key_invalid"``.

        Logged at WARNING (operator-visible); ``breaker_reason`` exposes it for a metric.
        """
        log.warning(
            "YouTube rejected the API key; suggest is down",
            retry_in_seconds=self._key_invalid_seconds,
        )
        self._failures = 0
        await self._open("key_invalid", self._key_invalid_seconds)

    async def upstream_failed(self, *, probe: bool = False) -> None:
        """A 5xx or timeout (after the client's retries); the probe's failure reopens at once."""
        self._failures += 1
        if not probe and self._failures < self._threshold:
            return
        self._failures = 0
        seconds = self._cooldown + self._half_open
        state = _today(
            await self._redis.attempt(breaker_state(self._store)), pacific_day(self._now())
        )
        if state is not None and state.reason != "upstream" and state.seconds_remaining >= seconds:
            # A quota or key breaker is already open: do not replace it with a shorter one.
            return
        log.warning("YouTube failing; suggest breaker open", cooldown_seconds=self._cooldown)
        # Locally (used only while Redis is away) there is no probe: the cool-down, then the
        # local allowance bounds the calls.
        await self._open("upstream", seconds, local_seconds=self._cooldown)
        if probe:
            await self._redis.attempt(end_probe(self._store))

    async def upstream_succeeded(self, *, probe: bool = False) -> None:
        """A call answered; the probe's success closes the ``"upstream"`` breaker."""
        self._failures = 0
        if probe:
            if self._local_breaker is not None and self._local_breaker[0] == "upstream":
                self._local_breaker = None
            closed = await self._redis.attempt(close_breaker(self._store, "upstream"))
            if closed:
                self._last_reason = None
                log.info("YouTube answers again; suggest breaker closed")
            await self._redis.attempt(end_probe(self._store))
