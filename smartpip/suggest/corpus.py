"""The suggest corpus: every video a search fetched lately, for answers YouTube cannot give.

A search (a request's miss or a warming run) hands its videos to :meth:`Corpus.record`; a
miss that cannot be searched (budget spent, breaker open, key rejected, YouTube slower than
the request's wait, Redis away and the local allowance spent, or only the reserve left) and
has no stale copy asks :meth:`Corpus.search`: the videos fetched within ``days`` whose title,
description or finding queries hold any of the query's normalized terms, ranked by the same
score as YouTube's results (:func:`~smartpip.suggest.ranking.rank`), the text match taken
against the query actually asked.

Storage: ``store.corpus`` (Postgres), through the :class:`~store.postgres.Database` thread
helper and its timeouts. YouTube's policy allows API data to be kept 30 days without a
refresh: ``days`` is at most :data:`MAX_CORPUS_DAYS`; older rows are never served and the
cleanup job deletes them. No user identity goes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from smartpip.suggest.normalize import NormalizedQuery, tokenize
from smartpip.suggest.ranking import RankingWeights, rank
from smartpip.youtube import Video
from store.corpus import (
    DESCRIPTION_CHARS,
    CorpusRow,
    CorpusWeights,
    search_corpus,
    upsert_videos,
)
from store.postgres import Database

__all__ = ["CANDIDATE_FACTOR", "MAX_CORPUS_DAYS", "Corpus", "PostgresCorpus", "corpus_row"]

#: YouTube's developer policies: API data kept at most 30 days without refreshing it.
MAX_CORPUS_DAYS = 30
#: Rows the SQL score picks per answer item, re-ranked here by the Python formula: float
#: rounding in SQL can only swap near-equal candidates, which this margin absorbs.
CANDIDATE_FACTOR = 3


class Corpus(Protocol):
    """Where the suggest service keeps fetched videos and answers from them."""

    async def record(
        self, videos: Sequence[Video], query: NormalizedQuery, fetched_at: datetime
    ) -> int:
        """Keep the videos one search returned for ``query``; returns the rows written.

        Raises:
            DatabaseUnavailable: Postgres is down or too slow.
        """
        ...

    async def search(self, query: NormalizedQuery, *, now: datetime, limit: int) -> list[Video]:
        """The best ``limit`` kept videos for ``query``, ranked; empty when none matches.

        Raises:
            DatabaseUnavailable: Postgres is down or too slow.
        """
        ...


def corpus_row(video: Video) -> CorpusRow:
    """The stored form of ``video``: trimmed description, terms tokenized like queries."""
    description = video.description[:DESCRIPTION_CHARS]
    return CorpusRow(
        video_id=video.video_id,
        title=video.title,
        description=description,
        channel_title=video.channel_title,
        published_at=video.published_at,
        view_count=video.view_count,
        thumbnail_url=video.thumbnail_url,
        title_terms=tokenize(video.title),
        description_terms=tokenize(description),
    )


def _video(row: CorpusRow) -> Video:
    return Video(
        video_id=row.video_id,
        title=row.title,
        description=row.description,
        channel_title=row.channel_title,
        published_at=row.published_at,
        thumbnail_url=row.thumbnail_url,
        view_count=row.view_count,
    )


@attrs.frozen
class PostgresCorpus:
    """:class:`Corpus` in Postgres.

    Attributes:
        db: The database.
        days: Rows fetched longer ago than this are not served (1 to :data:`MAX_CORPUS_DAYS`).
        weights: The ranking weights (``SMARTPIP_SUGGEST_WEIGHTS``).
    """

    db: Database
    days: int = MAX_CORPUS_DAYS
    weights: RankingWeights = attrs.field(factory=RankingWeights)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.days <= MAX_CORPUS_DAYS:
            raise ValueError(f"days must be 1 to {MAX_CORPUS_DAYS}")

    async def record(
        self, videos: Sequence[Video], query: NormalizedQuery, fetched_at: datetime
    ) -> int:
        rows = [corpus_row(video) for video in videos]
        return await self.db.run(upsert_videos, rows, query.terms, fetched_at)

    async def search(self, query: NormalizedQuery, *, now: datetime, limit: int) -> list[Video]:
        w = self.weights
        rows = await self.db.read(
            search_corpus,
            query.terms,
            now=now,
            cutoff=now - timedelta(days=self.days),
            weights=CorpusWeights(
                w.views, w.freshness, w.half_life_days, w.title_match, w.description_match
            ),
            limit=limit * CANDIDATE_FACTOR,
        )
        return rank([_video(row) for row in rows], query, now=now, weights=w)[:limit]
