"""Suggest's housekeeping beside the requests: popularity counts to Redis, gauges refreshed.

Requests only count queries in this process (:class:`QueryCounts`, no I/O); every few
seconds :meth:`SuggestBookkeeping.run_once` writes the counts to the hourly popularity sets
in one script call, tells the suggest cache's Redis back-off when Redis is back (without
suggest traffic nothing else would notice, and ``/v1/status`` would stay ``degraded``), and
refreshes the quota and breaker gauges. It runs as the supervised child
``suggest-bookkeeping`` (``smartpip/runtime/tree.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import attrs

from store.backoff import RedisBackoff
from store.popularity import record_queries
from store.redis import RedisStore, RedisUnavailable

__all__ = ["MAX_PENDING_QUERIES", "QueryCounts", "SuggestBookkeeping"]

# Why 10,000: distinct queries counted between two flushes; at ~100 bytes each about 1 MB.
# Past it, new queries wait for the next flush window (the counted ones keep counting).
MAX_PENDING_QUERIES = 10_000


class QueryCounts:
    """How often each normalized query was asked since the last flush; bounded.

    Concurrency: one trio thread; :meth:`note`, :meth:`take` and :meth:`give_back` do not
    await, so they never interleave.
    """

    def __init__(self, limit: int = MAX_PENDING_QUERIES) -> None:
        self._limit = limit
        self._pending: dict[str, int] = {}
        # Taken by a flush that has not finished: still counted by count(), so a query is not
        # taken for asked-once while its earlier asks are on their way to Redis.
        self._flushing: dict[str, int] = {}

    def note(self, text: str) -> None:
        """Count one ask of ``text`` (dropped when the table is full and ``text`` is new)."""
        if text in self._pending:
            self._pending[text] += 1
        elif len(self._pending) < self._limit:
            self._pending[text] = 1

    def count(self, text: str) -> int:
        """How often ``text`` was asked and not yet written to Redis (a flush in progress
        included)."""
        return self._pending.get(text, 0) + self._flushing.get(text, 0)

    def take(self) -> dict[str, int]:
        """The counts so far; the table starts over. Call :meth:`flushed` once they are
        written, or :meth:`give_back` if they could not be."""
        pending, self._pending = self._pending, {}
        self._flushing = pending
        return pending

    def flushed(self) -> None:
        """The counts last taken are in Redis."""
        self._flushing = {}

    def give_back(self, pending: dict[str, int]) -> None:
        """Put counts that could not be written back (still bounded)."""
        self._flushing = {}
        for text, count in pending.items():
            if text in self._pending or len(self._pending) < self._limit:
                self._pending[text] = self._pending.get(text, 0) + count

    def pending(self) -> dict[str, int]:
        """A copy of the counts not written yet."""
        return dict(self._pending)


@attrs.define
class SuggestBookkeeping:
    """One bookkeeping pass (:meth:`run_once`), run periodically under supervision.

    Attributes:
        store: The Redis store of the popularity sets.
        counts: The service's query counts.
        backoff: The suggest cache's Redis back-off (shared with the service).
        refresh_gauges: Re-reads the quota counters and sets the gauges.
        clock: Wall-clock seconds (the hourly popularity buckets).
    """

    store: RedisStore
    counts: QueryCounts
    backoff: RedisBackoff
    refresh_gauges: Callable[[], Awaitable[None]]
    clock: Callable[[], float] = time.time

    async def run_once(self) -> None:
        """Flush the popularity counts (a failed flush keeps them), then refresh the gauges."""
        pending = self.counts.take()
        if pending:
            try:
                await record_queries(self.store, pending, now=self.clock())
            except RedisUnavailable:
                self.counts.give_back(pending)
            except BaseException:
                self.counts.flushed()  # cancelled or a bug: the counts may or may not be in
                raise
            else:
                self.counts.flushed()
        if self.backoff.down:
            await self.backoff.attempt(self.store.ping())
        await self.refresh_gauges()
