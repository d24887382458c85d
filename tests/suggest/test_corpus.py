"""The suggest corpus on real Postgres: upserts, matching by terms, the ranking of local
answers, and the 30-day limit (rows past it are neither served nor kept)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from smartpip.suggest import normalize_query, rank
from smartpip.suggest.corpus import PostgresCorpus
from smartpip.youtube import Video
from store.cleanup import delete_corpus_past
from store.corpus import DESCRIPTION_CHARS, CorpusWeights, search_corpus
from store.postgres import Database, PostgresSettings, open_database
from tasks.cleanup import CleanupPolicy, PostgresCleanup, run_cleanup

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
PUBLISHED = NOW - 400 * DAY  # old enough that freshness is (almost) the same for all


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with open_database(PostgresSettings(url=pg_url, max_size=2)) as database:
        yield database


def video(
    video_id: str,
    title: str,
    description: str = "",
    views: int | None = 1000,
    published: dt.datetime = PUBLISHED,
) -> Video:
    return Video(
        video_id=video_id,
        title=title,
        description=description,
        channel_title="Channel",
        published_at=published,
        thumbnail_url=f"https://i.ytimg.com/vi/{video_id}/hqdefault.jpg",
        view_count=views,
    )


# Each query term matters: A holds all three in its title, B two (with more views), C one,
# D two in its description only, E none (found only by an earlier query's terms), F nothing.
FIXTURE = (
    video("A", "Piano rain sleep", views=1000),
    video("B", "Piano and rain", views=1500),
    video("C", "Solo piano", views=1000),
    video("D", "Night sounds", "rain for sleep", views=1000),
    video("E", "Ambient hour", views=1000),
    video("F", "Cooking pasta", views=10**9),
)


async def record_fixture(corpus: PostgresCorpus) -> None:
    await corpus.record(FIXTURE[:4] + FIXTURE[5:], normalize_query("night"), NOW - DAY)
    # E is in the corpus because a search for "piano ambient" returned it.
    await corpus.record([FIXTURE[4]], normalize_query("piano ambient"), NOW - DAY)


async def ids(corpus: PostgresCorpus, q: str, limit: int = 10) -> list[str]:
    return [v.video_id for v in await corpus.search(normalize_query(q), now=NOW, limit=limit)]


async def test_local_answers_are_ranked_by_the_score_against_the_query_asked(
    db: Database,
) -> None:
    corpus = PostgresCorpus(db)
    await record_fixture(corpus)
    # All three terms: A's full title match beats B's 1.5x views; D matches in the
    # description only (a quarter of a title match), below C's one title term; E only
    # through the query that found it; F not at all.
    assert await ids(corpus, "piano rain sleep") == ["A", "B", "C", "D", "E"]
    # Without "sleep", A and B match alike: B's views decide.
    assert await ids(corpus, "piano rain") == ["B", "A", "C", "D", "E"]
    # One term: the title matches first, then the rest by views.
    assert await ids(corpus, "sleep") == ["A", "D"]
    assert await ids(corpus, "pasta") == ["F"]
    assert await ids(corpus, "piano rain sleep", limit=2) == ["A", "B"]
    assert await ids(corpus, "violin") == []


async def test_the_sql_order_is_the_ranking_functions_order(db: Database) -> None:
    corpus = PostgresCorpus(db)
    await record_fixture(corpus)
    for q in ("piano rain sleep", "rain", "piano ambient sleep night"):
        query = normalize_query(q)
        got = await corpus.search(query, now=NOW, limit=10)
        w = corpus.weights
        weights = CorpusWeights(
            w.views, w.freshness, w.half_life_days, w.title_match, w.description_match
        )
        rows = await db.read(
            search_corpus, query.terms, now=NOW, cutoff=NOW - 30 * DAY, weights=weights, limit=10
        )
        assert [r.video_id for r in rows] == [v.video_id for v in got]
        assert [v.video_id for v in rank(got, query, now=NOW)] == [v.video_id for v in got]


async def test_a_refetch_updates_the_row_and_keeps_the_terms_that_found_it(db: Database) -> None:
    corpus = PostgresCorpus(db)
    first = video("A", "Old title", "x" * (DESCRIPTION_CHARS + 500), views=1)
    await corpus.record([first], normalize_query("old"), NOW - 10 * DAY)
    again = video("A", "New title", views=5)
    await corpus.record([again], normalize_query("fresh"), NOW)
    (found,) = await corpus.search(normalize_query("new"), now=NOW, limit=5)
    assert (found.title, found.view_count) == ("New title", 5)
    # Found by "old" before: still found by it, as one row.
    assert await ids(corpus, "old fresh") == ["A"]

    await corpus.record([first], normalize_query("old"), NOW - 20 * DAY)
    (kept,) = await corpus.search(normalize_query("old"), now=NOW, limit=5)
    assert len(kept.description) == DESCRIPTION_CHARS  # trimmed
    # A late write of an older fetch does not move the 30-day clock back.
    assert await db.run(delete_corpus_past, NOW - 5 * DAY, 100) == 0


async def test_terms_are_lexemes_taken_as_they_are(db: Database) -> None:
    corpus = PostgresCorpus(db)
    await corpus.record(
        [video("Q", "It's a back\\slash: C++ & ñandú 東京")], normalize_query("x"), NOW
    )
    assert await ids(corpus, "slash") == ["Q"]
    assert await ids(corpus, "ñandú 東京") == ["Q"]
    # Raw terms with quote and backslash (normalization never makes them) do not break the
    # query: no match, no error.
    rows = await db.read(
        search_corpus,
        ["it's", "a\\b", "x|y", "!"],
        now=NOW,
        cutoff=NOW - DAY,
        weights=CorpusWeights(1, 1, 1, 1, 1),
        limit=5,
    )
    assert rows == []


async def test_rows_past_the_30_days_are_not_served_and_the_cleanup_deletes_them(
    db: Database,
) -> None:
    corpus = PostgresCorpus(db, days=30)
    await corpus.record([video("OLD", "piano old")], normalize_query("piano"), NOW - 31 * DAY)
    await corpus.record([video("EDGE", "piano edge")], normalize_query("piano"), NOW - 29 * DAY)
    await corpus.record([video("NEW", "piano new")], normalize_query("piano"), NOW)
    assert set(await ids(corpus, "piano")) == {"EDGE", "NEW"}
    assert set(await ids(PostgresCorpus(db, days=7), "piano")) == {"NEW"}

    policy = CleanupPolicy(batch_size=1, max_batches=10, pause_seconds=0)
    summary = await run_cleanup(PostgresCleanup(db), policy, NOW)
    assert summary["corpus"] == 1
    # Refreshing EDGE within its 30 days keeps it; two days later only the refreshed stays.
    await corpus.record([video("EDGE", "piano edge")], normalize_query("piano"), NOW)
    later = NOW + 2 * DAY
    assert await run_cleanup(PostgresCleanup(db), policy, later) == {
        "sessions": 0,
        "audit": 0,
        "history": 0,
        "job_runs": 0,
        "corpus": 0,
        "capped": [],
    }
    assert set(await ids(corpus, "piano")) == {"EDGE", "NEW"}
    assert await run_cleanup(PostgresCleanup(db), policy, NOW + 31 * DAY) == {
        "sessions": 0,
        "audit": 0,
        "history": 0,
        "job_runs": 0,
        "corpus": 2,
        "capped": [],
    }


def test_the_corpus_keeps_data_at_most_30_days() -> None:
    with pytest.raises(ValueError, match="days"):
        PostgresCorpus(db=None, days=31)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="days"):
        PostgresCorpus(db=None, days=0)  # type: ignore[arg-type]
