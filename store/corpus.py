"""The suggest corpus in Postgres: videos fetched lately, upserted by ID, searched by terms.

Table ``suggest_corpus`` (``0005_corpus.sql``). Terms are tokenized by the caller (the suggest
service's normalization), stored as arrays and indexed as a ``tsvector`` built from them
as-is, so a query's normalized terms match exactly the terms a title or description holds.

- :func:`upsert_videos`: one row per video, replaced by the newer fetch; the query terms that
  found a video accumulate (newest first, at most :data:`MAX_QUERY_TERMS`).
- :func:`search_corpus`: the rows fetched since a cutoff whose document holds any of the
  query's terms, ordered by the suggest score computed in SQL (the same formula as
  ``smartpip.suggest.ranking``), best first, at most ``limit``; for a term held by many rows,
  among bounded candidates (:data:`CANDIDATES` per index walk, see the SQL).
- the 30-day purge: ``store.cleanup.delete_corpus_past``.

No user identity is ever written here. Query functions take a connection and never commit.

Concurrency: two searches upserting overlapping videos lock their rows in video ID order
(the rows are sorted), so they cannot deadlock; the later fetch wins, which is what a refresh
means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from psycopg.rows import class_row

__all__ = [
    "CANDIDATES",
    "DESCRIPTION_CHARS",
    "MAX_QUERY_TERMS",
    "MAX_TERM_CHARS",
    "CorpusRow",
    "CorpusWeights",
    "search_corpus",
    "upsert_videos",
]

#: Why 1,000 characters: the ranking's description match needs the words near the top (where
#: YouTube descriptions say what the video is); the rest is links and tags, and a row stays
#: around 2 KB, so 100,000 videos are a few hundred MB at most.
DESCRIPTION_CHARS = 1000
#: Why 32: the query terms widen what a video is found for; a video found by many different
#: queries keeps the most recent ones.
MAX_QUERY_TERMS = 32
#: Terms longer than this are left out of the document (a tsvector lexeme must stay under
#: 2 KB; a real word is far shorter, and a query term is at most 200 characters).
MAX_TERM_CHARS = 200


@attrs.frozen
class CorpusRow:
    """One video of the corpus, as stored.

    Attributes:
        video_id: YouTube's video ID.
        title: The title (HTML entities unescaped).
        description: The description, trimmed to :data:`DESCRIPTION_CHARS`.
        channel_title: The channel's name.
        published_at: Publication time (timezone-aware).
        view_count: Views; None when hidden.
        thumbnail_url: The thumbnail, or None.
        title_terms: The title's normalized terms.
        description_terms: The description's normalized terms.
    """

    video_id: str
    title: str
    description: str
    channel_title: str
    published_at: dt.datetime
    view_count: int | None
    thumbnail_url: str | None
    title_terms: list[str]
    description_terms: list[str]


@attrs.frozen
class CorpusWeights:
    """The ranking weights, as the SQL score needs them (``smartpip.suggest.RankingWeights``)."""

    views: float
    freshness: float
    half_life_days: float
    title_match: float
    description_match: float


UPSERT_VIDEO = """
INSERT INTO suggest_corpus AS c (
    video_id, title, description, channel_title, published_at, view_count, thumbnail_url,
    fetched_at, title_terms, description_terms, query_terms
) VALUES (
    %(video_id)s, %(title)s, %(description)s, %(channel_title)s, %(published_at)s,
    %(view_count)s, %(thumbnail_url)s, %(fetched_at)s, %(title_terms)s, %(description_terms)s,
    %(query_terms)s
)
ON CONFLICT (video_id) DO UPDATE SET
    title = EXCLUDED.title,
    description = EXCLUDED.description,
    channel_title = EXCLUDED.channel_title,
    published_at = EXCLUDED.published_at,
    view_count = EXCLUDED.view_count,
    thumbnail_url = EXCLUDED.thumbnail_url,
    fetched_at = greatest(c.fetched_at, EXCLUDED.fetched_at),
    title_terms = EXCLUDED.title_terms,
    description_terms = EXCLUDED.description_terms,
    query_terms = (
        EXCLUDED.query_terms
        || ARRAY(SELECT t FROM unnest(c.query_terms) AS t WHERE t <> ALL (EXCLUDED.query_terms))
    )[1:%(max_query_terms)s]
"""


def _terms(terms: Sequence[str]) -> list[str]:
    """Distinct terms short enough to be lexemes, in order."""
    return list(dict.fromkeys(t for t in terms if 0 < len(t) <= MAX_TERM_CHARS))


def upsert_videos(
    conn: psycopg.Connection[Any],
    rows: Sequence[CorpusRow],
    query_terms: Sequence[str],
    fetched_at: dt.datetime,
) -> int:
    """Insert or refresh ``rows``, found by a query of ``query_terms`` at ``fetched_at``.

    Args:
        conn: The connection (one transaction).
        rows: The videos of one search.
        query_terms: The normalized query's terms.
        fetched_at: When YouTube returned them (timezone-aware).

    Returns:
        The number of rows written.
    """
    params = [
        {
            **attrs.asdict(row),
            "description": row.description[:DESCRIPTION_CHARS],
            "title_terms": _terms(row.title_terms),
            "description_terms": _terms(row.description_terms),
            "query_terms": _terms(query_terms),
            "fetched_at": fetched_at,
            "max_query_terms": MAX_QUERY_TERMS,
        }
        # Video ID order: concurrent upserts lock shared rows in one order (no deadlock).
        for row in sorted(rows, key=lambda r: r.video_id)
    ]
    if not params:
        return 0
    with conn.cursor() as cur:
        cur.executemany(UPSERT_VIDEO, params)
    return len(params)


# Candidates: a term held by a large part of the corpus must not make a query score every row
# holding it (100,000 rows would take far longer than a request may). Each branch is one walk
# of an index, stopped after CANDIDATES rows: the most viewed rows holding any term, the most
# recently published ones (the freshness boost), and with several terms the most viewed rows
# holding all of them (the text match). A term held by fewer rows than that has all its rows
# in the first branch, so the ranking is exact there; beyond, a row outside every branch has
# fewer views than the CANDIDATES-th, was published earlier, and misses a term, so it would
# need a text match worth more than the views it lacks.
_CANDIDATES_ANY = """
    (SELECT video_id FROM suggest_corpus
     WHERE document @@ %(any)s::tsquery AND fetched_at >= %(cutoff)s
     ORDER BY view_count DESC NULLS LAST LIMIT %(candidates)s)
    UNION
    (SELECT video_id FROM suggest_corpus
     WHERE document @@ %(any)s::tsquery AND fetched_at >= %(cutoff)s
     ORDER BY published_at DESC LIMIT %(candidates)s)
"""
_CANDIDATES_ALL = """
    UNION
    (SELECT video_id FROM suggest_corpus
     WHERE document @@ %(all)s::tsquery AND fetched_at >= %(cutoff)s
     ORDER BY view_count DESC NULLS LAST LIMIT %(candidates)s)
"""
#: Rows each candidate walk takes (see above). Why 30: three times the default answer (up to
#: 90 candidates in all); a walk's cost grows with it (the entries it passes over to find
#: them), and the 100,000-video benchmark's p99 stays under 20 ms with it (bench/corpus.py).
CANDIDATES = 30

# The score of smartpip.suggest.ranking, in SQL (docs/suggest-ranking.md): views, freshness
# (an age below 0 counts as 0), and the shares of the query's terms in the title's and the
# description's terms. The caller re-ranks the rows with the Python formula, so float rounding
# here can at worst change which of two equal candidates makes the cut.
_SCORED = """
SELECT video_id, title, description, channel_title, published_at, view_count, thumbnail_url,
       title_terms, description_terms
FROM (
    SELECT c.*,
        %(views)s * ln(1 + greatest(coalesce(c.view_count, 0), 0)::float8)
        + %(freshness)s * power(
            0.5::float8,
            greatest(extract(epoch FROM %(now)s - c.published_at)::float8, 0)
                / 86400.0::float8 / %(half_life_days)s)
        + %(title_match)s * (
            SELECT count(*) FROM unnest(%(terms)s::text[]) AS t WHERE t = ANY (c.title_terms)
        ) / %(n)s
        + %(description_match)s * (
            SELECT count(*) FROM unnest(%(terms)s::text[]) AS t
            WHERE t = ANY (c.description_terms)
        ) / %(n)s AS score
    FROM suggest_corpus AS c JOIN ({candidates}) AS candidates USING (video_id)
) AS scored
ORDER BY score DESC, coalesce(view_count, 0) DESC, published_at DESC, video_id
LIMIT %(limit)s
"""
SEARCH_CORPUS_ONE_TERM = _SCORED.format(candidates=_CANDIDATES_ANY)
SEARCH_CORPUS = _SCORED.format(candidates=_CANDIDATES_ANY + _CANDIDATES_ALL)


def _tsquery(terms: Sequence[str], operator: str) -> str:
    """``terms`` joined by ``operator`` (``|``, ``&``), each a quoted lexeme taken as is (no
    parsing, no stemming)."""
    quoted = ("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)
    return f" {operator} ".join(quoted)


def search_corpus(
    conn: psycopg.Connection[Any],
    terms: Sequence[str],
    *,
    now: dt.datetime,
    cutoff: dt.datetime,
    weights: CorpusWeights,
    limit: int,
) -> list[CorpusRow]:
    """The best ``limit`` rows fetched since ``cutoff`` that hold any of ``terms``.

    One statement (fit for ``Database.read``).

    Args:
        conn: The connection.
        terms: The normalized query's terms (distinct).
        now: The time freshness counts from (timezone-aware).
        cutoff: Rows fetched before this are not served (the 30-day limit).
        weights: The ranking weights.
        limit: At most this many rows.

    Returns:
        The rows, best first by the SQL score.
    """
    usable = _terms(terms)
    if not usable or limit < 1:
        return []
    params = {
        **attrs.asdict(weights),
        "terms": usable,
        "n": float(len(usable)),
        "any": _tsquery(usable, "|"),
        "all": _tsquery(usable, "&"),
        "candidates": CANDIDATES,
        "now": now,
        "cutoff": cutoff,
        "limit": limit,
    }
    with conn.cursor(row_factory=class_row(CorpusRow)) as cur:
        sql = SEARCH_CORPUS if len(usable) > 1 else SEARCH_CORPUS_ONE_TERM
        # Never prepared: a generic plan cannot know how common the terms are, and the walks
        # are only fast with the plan made for the actual terms (a common term walks an index,
        # a rare one reads the GIN index).
        return cur.execute(sql, params, prepare=False).fetchall()
