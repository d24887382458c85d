"""Rate limiting for the HTTP layer: policies, decisions with their headers, and the limiter.

The limit is shared by every replica (one GCRA bucket per policy and client in Redis,
``store.ratelimit``), spent from small local leases of that bucket (``store.ratelease``), so a
busy client's requests cost no Redis command; :class:`RateLimiter` states the scheme and its
worst-case over-admission. When Redis is unavailable each process falls back to its own
in-memory buckets with a smaller limit, and says so (``Decision.degraded``); rate limiting
never fails a request because of Redis, and never waits longer than the Redis timeouts.

Headers follow draft-ietf-httpapi-ratelimit-headers (09/10, structured fields)::

    RateLimit-Policy: "suggest";q=30;w=60
    RateLimit: "suggest";r=12;t=34
    Retry-After: 2                      (refused requests only)
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter

from smartpip.http.leases import BucketTable, LocalBucket
from smartpip.logs import get_logger
from store.backoff import RedisBackoff
from store.ratelease import LeaseRequest, RedisLeases, TokenLeases
from store.ratelimit import MIN_INTERVAL, GcraResult, LocalGcra
from store.redis import RedisStore

__all__ = [
    "DEFAULT_SETTLE_INTERVAL",
    "LEASE_TTL_INTERVALS",
    "MAX_WINDOW",
    "REDIS_BACKOFF",
    "Decision",
    "Policy",
    "RateLimiter",
    "bucket_key",
    "parse_policy",
]

log = get_logger(__name__)

# Why 1 s: long enough that a dead or frozen Redis costs one timed-out request per second per
# process instead of one per request; short enough that shared limits return quickly.
REDIS_BACKOFF = 1.0
# Why 250 ms: busy clients' units are leased ahead four times a second (one Redis command per
# interval for all of them, instead of one per request).
DEFAULT_SETTLE_INTERVAL = 0.25
# Why 4: leased units live four settle intervals (1 s by default), which bounds the
# over-admission (RateLimiter) to what a policy refills in that time; a busy client is leased
# about three intervals' worth, so it asks every other interval or so, and the fourth is the
# margin that lets a chunk be spent before it expires.
LEASE_TTL_INTERVALS = 4
# Why 1 day: a bucket lives at most one window in Redis; longer windows are typos ("1000/10h"
# meant per minute?) better caught at startup.
MAX_WINDOW = 86_400
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_POLICY = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*", re.IGNORECASE)


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    # The name is quoted in headers and used as a metric label: a closed set of plain tokens.
    if not _NAME.fullmatch(value):
        raise ValueError(f"policy name {value!r} must match {_NAME.pattern}")


def _check_period(instance: Policy, _attribute: object, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"policy {instance.name!r}: period must be positive, not {value}")
    if value / instance.limit < MIN_INTERVAL:
        raise ValueError(f"policy {instance.name!r}: at most {1 / MIN_INTERVAL:.0f} a second")


def _check_fallback(instance: Policy, _attribute: object, value: int | None) -> None:
    if value is not None and not 1 <= value <= instance.limit:
        raise ValueError(
            f"policy {instance.name!r}: fallback_limit must be between 1 and the limit "
            f"({instance.limit}), not {value}"
        )


@attrs.frozen
class Policy:
    """A named limit: ``limit`` requests per ``period`` seconds, bursts up to ``limit``.

    Attributes:
        name: Appears in the headers and the metric label (letters, digits, ``_.-``).
        limit: Requests allowed per period, shared by all replicas.
        period: Window in seconds.
        fallback_limit: Per-process limit while Redis is unavailable; None means
            :attr:`local_limit`'s default.
    """

    name: str = attrs.field(validator=_check_name)
    limit: int = attrs.field(validator=attrs.validators.ge(1))
    period: float = attrs.field(converter=float, validator=_check_period)
    fallback_limit: int | None = attrs.field(default=None, validator=_check_fallback)

    @property
    def local_limit(self) -> int:
        """The limit each process applies alone while Redis is unavailable.

        Default: a quarter of ``limit``, at least 1. Why: without Redis every replica counts
        alone, so a client spread over N replicas gets N times this; a quarter keeps up to
        four replicas within the shared limit.
        """
        if self.fallback_limit is not None:
            return self.fallback_limit
        return max(1, self.limit // 4)


def parse_policy(name: str, text: str) -> Policy:
    """Parse a configured limit such as ``"30/60s"``, ``"120/1m"``, ``"1000/1h"`` or ``"5/s"``.

    The form is ``<count>/<window>``: a positive integer count; a window of an optional
    positive integer (default 1) and a unit ``s``, ``m``, ``h`` or ``d``, at most 1 day.

    Args:
        name: The policy name (used in messages, headers and metrics).
        text: The configured value.

    Returns:
        The policy, with the default fallback limit.

    Raises:
        ValueError: The text is malformed or out of range; the message names the policy.
    """
    match = _POLICY.fullmatch(text)
    if match is None:
        raise ValueError(
            f"rate limit {name!r}: {text!r} is not <count>/<window>, "
            "e.g. '30/60s', '120/1m' or '1000/1h'"
        )
    count, amount, unit = int(match[1]), int(match[2] or "1"), match[3].lower()
    window = amount * _UNITS[unit]
    if count < 1:
        raise ValueError(f"rate limit {name!r}: the count in {text!r} must be at least 1")
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(
            f"rate limit {name!r}: the window in {text!r} must be between 1 s and 1 day"
        )
    return Policy(name=name, limit=count, period=float(window))


@attrs.frozen
class Decision:
    """Whether a request may proceed under a policy, and what to tell the client.

    Attributes:
        policy: The policy applied.
        allowed: False means answer 429.
        remaining: Requests still allowed right now.
        retry_after: Whole seconds to wait before retrying (at least 1 when refused, else 0).
        reset: Whole seconds until the full quota is available again.
        degraded: True when Redis was unavailable and the per-process limit applied.
    """

    policy: Policy
    allowed: bool
    remaining: int
    retry_after: int
    reset: int
    degraded: bool

    @property
    def quota(self) -> int:
        """The limit actually applied (the per-process one when degraded)."""
        return self.policy.local_limit if self.degraded else self.policy.limit

    def headers(self) -> dict[str, str]:
        """``RateLimit-Policy``, ``RateLimit`` and, when refused, ``Retry-After``."""
        name = self.policy.name
        out = {
            "RateLimit-Policy": f'"{name}";q={self.quota};w={math.ceil(self.policy.period)}',
            "RateLimit": f'"{name}";r={self.remaining};t={self.reset}',
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


def bucket_key(policy: Policy, key: str) -> str:
    """The bucket for ``key`` under ``policy``: ``<policy>:<hash of key>``.

    Hashed so that raw client addresses or user IDs never become Redis key names, and key
    length stays bounded whatever the caller passes.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{policy.name}:{digest}"


def _decision(policy: Policy, result: GcraResult, *, degraded: bool) -> Decision:
    return Decision(
        policy=policy,
        allowed=result.allowed,
        remaining=result.remaining,
        retry_after=0 if result.allowed else max(1, math.ceil(result.retry_after)),
        reset=math.ceil(result.reset_after),
        degraded=degraded,
    )


def _max_lease(limit: int) -> int:
    return max(1, limit // 16)


def _lease_decision(policy: Policy, bucket: LocalBucket, now: float, *, allowed: bool) -> Decision:
    reset = bucket.reset(now)
    if allowed:
        return Decision(policy, True, bucket.remaining(now), 0, math.ceil(reset), False)
    retry = max(1, math.ceil(bucket.retry_at - now))
    return Decision(policy, False, 0, retry, math.ceil(reset), False)


class RateLimiter:
    """Shared limits spent from local leases; per-process limits while Redis is unavailable.

    **The scheme.** Each replica admits from units it leased from the shared GCRA bucket of
    the (policy, client) in Redis (``store.ratelease``): a lease charges the bucket exactly
    as that many single checks would, atomically, so units are never created and the shared
    limit holds whatever the number of replicas. A request spends a held unit with no Redis
    command at all. When none is held it leases inline (one round trip, the same cost as the
    old check-per-request), asking for more than one when the client was busy since the last
    settle; concurrent requests for the bucket wait for that one lease instead of each asking.
    The settle loop (:meth:`settle`, every ``settle_interval`` seconds, a supervised child of
    ``smartpip/runtime/tree.py``) leases ahead, in one Redis command for all of them, for the
    buckets busy in the last interval (about three times what they spent), so a steadily busy
    client does not wait for Redis at all. A cold client leases one unit at a time: exactly
    the old behaviour. So does a client whose shared bucket is below half its capacity: units
    leased ahead and lost (see below) would otherwise refuse a client that stays under its
    limit when several replicas serve it (round-robin), so near the limit nothing is leased
    ahead and nothing can be lost.

    Leases are small and short-lived: a replica holds at most :meth:`max_lease` units of a
    bucket (a sixteenth of the limit, at least 1), spendable for ``lease_ttl`` (four settle
    intervals, 1 s by default) after their grant. Units not spent are given back with the
    next lease of the bucket, or alone once they are about to expire; the shared state takes
    back as many as it exactly can (all if nobody touched the bucket since, else those the
    bucket could not have refilled since, see :mod:`store.ratelease`); the rest are lost,
    which can only admit fewer.

    **Worst-case over-admission.** Units are never created, only moved in time by at most
    ``lease_ttl`` (granted at g, spent before g + lease_ttl), and what a replica holds when a
    window opens is at most ``max_lease``. So in any window, the requests admitted across R
    replicas exceed what one shared GCRA bucket admits in that window by at most
    ``min(R * max_lease, ceil(lease_ttl * limit / period))``: at most one lease per replica,
    and never more than the policy refills in ``lease_ttl``. With the defaults (settle 250 ms,
    lease_ttl 1 s): 300/1m admits at most 5 more than a single bucket, 60/1m, 30/1m and 20/1m
    at most 1 more, whatever R; the bench's lifted 600000/1m at most 10,000 (1 s of its rate).

    **Refusals** are remembered for ``settle_interval`` (or until ``Retry-After``, if later;
    the header is whole seconds, so a client that obeys it never meets the difference): a
    client hammering past its limit costs one Redis command per interval, not one per request.

    **Redis down** keeps the old behaviour: units already held are still spent (they were
    charged to the shared bucket); past them each process falls back to its own in-memory
    buckets with ``policy.local_limit`` and says so (``Decision.degraded``). One check at a
    time probes Redis after the back-off; while Redis is believed down nobody waits for a
    lease in flight, so no request waits longer than the Redis timeouts.

    Concurrency: state changes only between awaits, by the trio task running ``check`` or
    ``settle``, so no lock is needed (see :mod:`smartpip.http.leases`).

    Args:
        leases: The shared buckets (:class:`~store.ratelease.RedisLeases`; a ``RedisStore``
            is wrapped in one; tests pass :class:`~store.ratelease.MemoryLeases`).
        registry: Where ``rate_limit_decisions_total{policy, outcome, backend}`` and
            ``rate_limit_leases_total{via}`` are registered.
        clock: Monotonic seconds, for leases, the back-off and the local buckets.
        backoff: Seconds to skip Redis after it failed.
        settle_interval: Seconds between settles (``SMARTPIP_RATE_LIMIT_SETTLE_MS``).
    """

    def __init__(
        self,
        leases: TokenLeases | RedisStore,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: float = REDIS_BACKOFF,
        settle_interval: float = DEFAULT_SETTLE_INTERVAL,
    ) -> None:
        if not (math.isfinite(settle_interval) and settle_interval > 0):
            raise ValueError(f"settle_interval must be positive, not {settle_interval}")
        self._leases = RedisLeases(leases) if isinstance(leases, RedisStore) else leases
        self._clock = clock
        self._local = LocalGcra(clock=clock)
        self._buckets = BucketTable()
        self.settle_interval = settle_interval
        self.lease_ttl = LEASE_TTL_INTERVALS * settle_interval
        self._redis = RedisBackoff(
            went_down="rate limiting falls back to per-process limits",
            came_back="rate limiting uses the shared limits in Redis again",
            backoff=backoff,
            clock=clock,
        )
        self._decisions = Counter(
            "rate_limit_decisions",
            "Rate-limit decisions by policy, outcome (allowed, limited) and backend (redis, local)",
            ["policy", "outcome", "backend"],
            registry=registry,
        )
        self._lease_calls = Counter(
            "rate_limit_leases",
            "Leases asked of the shared buckets, by where (inline in a request, or settle)",
            ["via"],
            registry=registry,
        )
        for via in ("inline", "settle"):  # both series from the start, at zero
            self._lease_calls.labels(via)
        # Bounded: policies x 2 outcomes x 2 backends; labels() takes a lock per call.
        self._children: dict[tuple[str, bool, bool], Counter] = {}

    @property
    def degraded(self) -> bool:
        """Whether the last attempt to reach Redis failed (for status reporting)."""
        return self._redis.down

    @staticmethod
    def max_lease(policy: Policy) -> int:
        """The most units one lease takes: a sixteenth of the limit, at least 1.

        Why a sixteenth: it bounds both what one replica holds back from the others and the
        over-admission (see the class doc) to a few percent of the limit; a client busier
        than a sixteenth of its limit per settle interval is about to be limited anyway.
        """
        return _max_lease(policy.limit)

    async def check(self, policy: Policy, key: str) -> Decision:
        """Charge one request by ``key`` (a client address, a user ID) against ``policy``.

        Never raises because of Redis: an unavailable Redis means the per-process limit
        (``policy.local_limit``) and ``degraded=True``. Waits at most the store's
        ``connect_timeout + command_timeout`` (plus, at worst, one lease in flight for the
        same client when Redis was believed up).

        Args:
            policy: The limit to apply.
            key: Who is counted; hashed before use (see :func:`bucket_key`).

        Returns:
            The decision; ``decision.headers()`` belong on the response either way.
        """
        name = bucket_key(policy, key)
        bucket = self._buckets.get(name, limit=policy.limit, period=policy.period)
        while True:
            now = self._clock()
            if bucket.take(now):
                return self._count(_lease_decision(policy, bucket, now, allowed=True))
            if bucket.refused_until > now:
                return self._count(_lease_decision(policy, bucket, now, allowed=False))
            if bucket.flight is not None and not self._redis.down:
                bucket.waiting += 1
                try:
                    await bucket.flight.wait()
                finally:
                    bucket.waiting -= 1
                continue  # the lease landed: spend from it, or lease again
            if bucket.flight is None:
                want = bucket.waiting + 1
                if bucket.roomy(now):
                    want = max(want, 2 * bucket.spent, math.ceil(bucket.recent))
                if await self._lease([(name, bucket, want)], via="inline"):
                    continue
            result = self._local.check(name, limit=policy.local_limit, period=policy.period)
            return self._count(_decision(policy, result, degraded=True))

    async def settle(self) -> int:
        """Lease ahead for busy buckets and give back idle ones' units, in one batch.

        The settle loop's one run (``smartpip/runtime/tree.py``). A bucket whose units expire
        before the next settle gives back what it holds and, if it was used lately, takes a
        lifetime's worth at its recent pace (at least ``3n + 1`` after ``n`` units since the
        last settle; at most :meth:`max_lease`); one holding fewer than ``2n`` is topped up to
        ``3n + 1`` (the new units expire with the old); one unused lately and holding nothing
        is forgotten. All in one Redis command. Never raises because of Redis.

        Returns:
            The number of buckets settled with the shared state.
        """
        now = self._clock()
        soon = now + 1.5 * self.settle_interval
        due: list[tuple[str, LocalBucket, int]] = []
        top_ups: list[tuple[str, LocalBucket, int]] = []
        for name, bucket in self._buckets.items():
            if bucket.flight is not None:
                continue  # a request is leasing for it right now
            spent, bucket.spent = bucket.spent, 0
            # About the units spent in the last four intervals (a unit's lifetime).
            bucket.recent = 0.75 * bucket.recent + spent
            pace = math.ceil(bucket.recent) if bucket.recent >= 0.5 else 0
            expiring = bucket.expires_at <= soon
            if not bucket.roomy(now):
                # Near its limit a client leases one unit per request (exact, nothing lost);
                # units held are given back once about to expire.
                if expiring and bucket.units > 0:
                    due.append((name, bucket, 0))
                elif spent == bucket.units == pace == 0 and bucket.refused_until <= now:
                    self._buckets.forget(name)
                continue
            if expiring and (bucket.units > 0 or spent > 0):
                # Renewed at the recent pace (a lifetime's worth); given back when idle.
                due.append((name, bucket, max(3 * spent, pace) + 1 if pace else 0))
            elif spent == 0:
                if bucket.units == 0 and pace == 0 and bucket.refused_until <= now:
                    self._buckets.forget(name)
            elif bucket.units < 2 * spent:
                want = min(3 * spent + 1, _max_lease(bucket.limit)) - bucket.units
                if want > 0:
                    top_ups.append((name, bucket, want))
        if due or top_ups:
            await self._lease(due, top_ups, via="settle")
        return len(due) + len(top_ups)

    async def _lease(
        self,
        due: Sequence[tuple[str, LocalBucket, int]],
        top_ups: Sequence[tuple[str, LocalBucket, int]] = (),
        *,
        via: str,
    ) -> bool:
        """In one batch: for each bucket of ``due``, give back the units it holds and lease up
        to ``want`` (at most ``max_lease``); for each of ``top_ups``, lease ``want`` more
        beside them (the caller keeps the total within ``max_lease``). False when Redis is
        away; each bucket's ``flight`` is set until the answer is in."""
        requests = []
        for name, bucket, want in due:
            refund, version, tat = bucket.reclaim()
            capped = min(want, _max_lease(bucket.limit))
            request = LeaseRequest(name, bucket.limit, bucket.period, capped, refund, version, tat)
            requests.append(request)
        for name, bucket, want in top_ups:
            requests.append(LeaseRequest(name, bucket.limit, bucket.period, want))
        batch = [(bucket, False) for _n, bucket, _w in due]
        batch += [(bucket, True) for _n, bucket, _w in top_ups]
        flight = trio.Event()
        for bucket, _top_up in batch:
            bucket.flight = flight
        self._lease_calls.labels(via).inc()
        try:
            grants = await self._redis.attempt(self._leases.lease(requests))
        finally:
            for bucket, _top_up in batch:
                bucket.flight = None
            flight.set()
        if grants is None:
            return False  # units reclaimed for a refund are lost: only ever fewer admissions
        now = self._clock()
        for (bucket, top_up), grant in zip(batch, grants, strict=True):
            bucket.record(
                grant, now, top_up=top_up, ttl=self.lease_ttl, refusal_ttl=self.settle_interval
            )
        return True

    def _count(self, decision: Decision) -> Decision:
        label = (decision.policy.name, decision.allowed, decision.degraded)
        child = self._children.get(label)
        if child is None:
            child = self._decisions.labels(
                decision.policy.name,
                "allowed" if decision.allowed else "limited",
                "local" if decision.degraded else "redis",
            )
            self._children[label] = child
        child.inc()
        return decision
