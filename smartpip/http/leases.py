"""The units this replica holds from the shared rate-limit buckets, per (policy, client).

Each bucket this process has seen keeps a :class:`LocalBucket`: the leased units not spent
yet (one lease's worth, spendable for ``ttl`` seconds after its grant, with the bucket's
version at the grant, which a refund of them must name); what the last answer from the
shared store said about the bucket (to compute the ``RateLimit`` header between answers); a
refusal remembered for a short while; and the one lease in flight, if any.

Concurrency: trio runs one task at a time and nothing here awaits, so spending a unit
(:meth:`LocalBucket.take`) is atomic with respect to other tasks. At most one lease per bucket
is in flight (``flight``); other requests for the bucket wait on it rather than asking the
store themselves, so a burst costs one round trip, not one each.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import attrs
import trio

from store.ratelease import LeaseGrant

__all__ = ["MAX_BUCKETS", "BucketTable", "LocalBucket"]

# Why 10,000: as LocalGcra's bound; an entry is a few hundred bytes. Past it the least
# recently used bucket without a lease in flight is forgotten (its unspent units expire
# unspent: only ever fewer admissions).
MAX_BUCKETS = 10_000
_SLACK_S = 1e-6


@attrs.define
class LocalBucket:
    """This replica's view of one shared bucket (see the module doc)."""

    limit: int
    period: float
    units: int = 0  # leased, not spent yet (spendable until expires_at)
    expires_at: float = -math.inf
    latest: int = 0  # units of the last lease (the refundable ones)
    version: int = 0  # the bucket's version after the last lease (names it for a refund)
    tat: int = 0  # the bucket's TAT after the last lease (bounds a late refund)
    known_reset: float = 0.0  # seconds until the shared bucket is full, as of known_at
    known_at: float = 0.0
    refused_until: float = -math.inf
    retry_at: float = 0.0  # when the refusal said one unit would be available
    flight: trio.Event | None = None
    waiting: int = 0
    spent: int = 0  # units spent since the last settle
    recent: float = 0.0  # units spent lately: a sum decaying by a quarter each settle

    def live(self, now: float) -> int:
        """Units that may still be spent now."""
        return self.units if now < self.expires_at else 0

    def take(self, now: float) -> bool:
        """Spend one leased unit if an unexpired one is held."""
        if self.units > 0 and now < self.expires_at:
            self.units -= 1
            self.spent += 1
            return True
        return False

    def reclaim(self) -> tuple[int, int, int]:
        """Give up the units held, for a refund: ``(refundable, version, tat)``.

        Only the units of the last lease can be refunded (the bucket's version names that
        lease); units spent go oldest first, so those are the ones still held. Older ones are
        dropped. None of them is spent meanwhile: they are gone from here before the refund.
        """
        refundable = min(self.units, self.latest)
        self.units = self.latest = 0
        return refundable, self.version, self.tat

    def record(
        self, grant: LeaseGrant, now: float, *, top_up: bool, ttl: float, refusal_ttl: float
    ) -> None:
        """Keep what a lease brought: its units, the bucket's version and reset, and a refusal
        (when units were asked for and none came) for ``refusal_ttl``, or until
        ``retry_after`` if later.

        A new lease's units may be spent until ``now + ttl``; a top-up's join the units held
        and expire with them (no unit lives longer than ``ttl`` after its grant).

        A refusal remembered a little past ``retry_after`` only refuses more: the client was
        told to wait whole seconds (``Retry-After`` is at least 1), longer than ``refusal_ttl``.
        """
        self.known_reset, self.known_at = grant.reset_after, now
        if top_up:
            self.units += grant.granted
        else:
            self.units, self.expires_at = grant.granted, now + ttl
        self.latest, self.version, self.tat = grant.granted, grant.version, grant.tat
        if grant.granted > 0:
            self.refused_until = -math.inf
        elif grant.retry_after > 0:
            self.refused_until = now + max(grant.retry_after, refusal_ttl)
            self.retry_at = now + grant.retry_after

    def reset(self, now: float) -> float:
        """Seconds until the shared bucket is full again, from the last answer."""
        return max(0.0, self.known_reset - (now - self.known_at))

    def roomy(self, now: float) -> bool:
        """Whether the shared bucket had at least half its capacity left at the last answer
        (refilled since): only then are units leased ahead, whose waste could otherwise
        refuse a client that stays under its limit."""
        return 2 * self.remaining(now) >= self.limit

    def remaining(self, now: float) -> int:
        """Requests this client may still make right now: the units held here plus what the
        shared bucket had left at the last answer, refilled since (other replicas may have
        spent some meanwhile: an estimate, corrected by every lease)."""
        interval = self.period / self.limit
        shared = math.floor((self.period - self.reset(now) + _SLACK_S) / interval)
        return max(0, min(self.limit, self.live(now) + max(0, shared)))


class BucketTable:
    """The buckets this process holds, least recently used first, bounded."""

    def __init__(self, *, max_buckets: int = MAX_BUCKETS) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, not {max_buckets}")
        self._max = max_buckets
        self._buckets: OrderedDict[str, LocalBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: str, *, limit: int, period: float) -> LocalBucket:
        """The bucket for ``key``, created if new (evicting the least recently used)."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.limit != limit or bucket.period != period:
            bucket = LocalBucket(limit=limit, period=period)
            self._buckets[key] = bucket
            self._evict()
        else:
            self._buckets.move_to_end(key)
        return bucket

    def peek(self, key: str) -> LocalBucket | None:
        """The bucket for ``key`` if held, without touching its recency."""
        return self._buckets.get(key)

    def items(self) -> list[tuple[str, LocalBucket]]:
        """A snapshot of the buckets (safe to iterate across awaits)."""
        return list(self._buckets.items())

    def forget(self, key: str) -> None:
        """Drop an idle bucket."""
        self._buckets.pop(key, None)

    def _evict(self) -> None:
        while len(self._buckets) > self._max:
            for key, bucket in self._buckets.items():
                if bucket.flight is None:
                    del self._buckets[key]
                    break
            else:
                return  # every bucket has a lease in flight: over the bound until they land
