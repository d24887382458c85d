"""The suggest service's side of the corpus: background writes and local answers.

:class:`LocalAnswers` wraps a :class:`~smartpip.suggest.corpus.Corpus` for
:class:`~smartpip.suggest.service.Suggester`:

- :meth:`LocalAnswers.record` writes one search's videos in a task of the flights' nursery,
  so the answer never waits for Postgres; at most :data:`MAX_PENDING_CORPUS_WRITES` at once
  (more are dropped), and a failed write is logged and counted
  (``suggest_corpus_writes_total``), never an error of the search;
- :meth:`LocalAnswers.search` is the corpus's answer for a miss that could not be searched,
  or None when nothing matches or Postgres is away (the caller answers 503 then, as before
  the corpus existed).

Concurrency: trio tasks only; the pending count changes between awaits.
"""

from __future__ import annotations

from datetime import datetime

import trio

from smartpip.logs import get_logger
from smartpip.suggest.corpus import Corpus
from smartpip.suggest.metrics import SuggestMetrics
from smartpip.suggest.normalize import NormalizedQuery
from smartpip.youtube import Video
from store.errors import DatabaseUnavailable

__all__ = ["MAX_PENDING_CORPUS_WRITES", "LocalAnswers"]

log = get_logger(__name__)

# Why 16: a corpus write is one short transaction; more pending than this means Postgres is
# slow, and a search's videos are worth less than the connections requests need.
MAX_PENDING_CORPUS_WRITES = 16


class LocalAnswers:
    """Corpus writes and reads for the suggest service.

    Args:
        corpus: The corpus.
        metrics: Where writes are counted.
    """

    def __init__(self, corpus: Corpus, metrics: SuggestMetrics) -> None:
        self._corpus = corpus
        self._metrics = metrics
        self._pending = 0

    def record(
        self,
        nursery: trio.Nursery,
        videos: list[Video],
        query: NormalizedQuery,
        fetched_at: datetime,
    ) -> None:
        """Write a search's videos in the background (bounded, best effort)."""
        if not videos:
            return
        if self._pending >= MAX_PENDING_CORPUS_WRITES:
            self._metrics.corpus_write("dropped")
            return
        self._pending += 1
        nursery.start_soon(self._write, videos, query, fetched_at)

    async def _write(
        self, videos: list[Video], query: NormalizedQuery, fetched_at: datetime
    ) -> None:
        try:
            await self._corpus.record(videos, query, fetched_at)
        except DatabaseUnavailable as exc:
            self._metrics.corpus_write("failed")
            log.warning("suggest corpus: a search's videos were not recorded", error=str(exc))
        except Exception:
            # A bug must not cancel the flights' nursery; the answer is already out.
            self._metrics.corpus_write("failed")
            log.exception("suggest corpus: recording a search's videos failed")
        else:
            self._metrics.corpus_write("ok")
        finally:
            self._pending -= 1

    async def search(
        self, query: NormalizedQuery, *, now: datetime, limit: int, reason: str
    ) -> list[Video] | None:
        """The corpus's best ``limit`` videos for ``query``; None if none or Postgres is away.

        Args:
            query: The normalized query.
            now: The ranking's time.
            limit: At most this many.
            reason: Why YouTube could not be asked (for the log line).
        """
        try:
            videos = await self._corpus.search(query, now=now, limit=limit)
        except DatabaseUnavailable as exc:
            log.warning(
                "suggest corpus: Postgres unavailable; no local answer",
                error=str(exc),
                reason=reason,
            )
            return None
        return videos or None
