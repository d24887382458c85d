"""Rate limiting for the HTTP layer: policies, decisions with their headers, and the limiter.

The limit is shared by every replica (one GCRA bucket per policy and client in Redis,
``store.ratelimit``). When Redis is unavailable each process falls back to its own in-memory
buckets with a smaller limit, and says so (``Decision.degraded``); rate limiting never fails a
request because of Redis, and never waits longer than the Redis timeouts.

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
from collections.abc import Callable

import attrs
from prometheus_client import CollectorRegistry, Counter

from smartpip.logs import get_logger
from store.backoff import RedisBackoff
from store.ratelimit import MIN_INTERVAL, GcraResult, LocalGcra, gcra_check
from store.redis import RedisStore

__all__ = [
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


class RateLimiter:
    """Shared limits through Redis, per-process limits while Redis is unavailable.

    One limiter per process (its metric is registered on ``registry``; a second limiter on the
    same registry is refused by prometheus-client).

    Concurrency: the Redis state (:class:`~store.backoff.RedisBackoff`) changes only
    between awaits, by the trio task running ``check``, so no lock is needed. While Redis is
    believed down, every check uses the local buckets; once the back-off has passed, exactly one
    check at a time (the probe) tries Redis again, and the others keep using the local buckets
    until the probe succeeds.

    Args:
        store: The Redis store.
        registry: Where ``rate_limit_decisions_total{policy, outcome, backend}`` is registered.
        clock: Monotonic seconds, for the back-off and the local buckets (tests inject one).
        backoff: Seconds to skip Redis after it failed.
    """

    def __init__(
        self,
        store: RedisStore,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: float = REDIS_BACKOFF,
    ) -> None:
        self._store = store
        self._clock = clock
        self._local = LocalGcra(clock=clock)
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
        # Bounded: policies x 2 outcomes x 2 backends; labels() takes a lock per call.
        self._children: dict[tuple[str, bool, bool], Counter] = {}

    @property
    def degraded(self) -> bool:
        """Whether the last attempt to reach Redis failed (for status reporting)."""
        return self._redis.down

    async def check(self, policy: Policy, key: str) -> Decision:
        """Charge one request by ``key`` (a client address, a user ID) against ``policy``.

        Never raises because of Redis: an unavailable Redis means the per-process limit
        (``policy.local_limit``) and ``degraded=True``. Waits at most the store's
        ``connect_timeout + command_timeout``.

        Args:
            policy: The limit to apply.
            key: Who is counted; hashed before use (see :func:`bucket_key`).

        Returns:
            The decision; ``decision.headers()`` belong on the response either way.
        """
        bucket = bucket_key(policy, key)
        shared = await self._redis.attempt(
            gcra_check(self._store, bucket, limit=policy.limit, period=policy.period)
        )
        if shared is not None:
            return self._count(_decision(policy, shared, degraded=False))
        result = self._local.check(bucket, limit=policy.local_limit, period=policy.period)
        return self._count(_decision(policy, result, degraded=True))

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
