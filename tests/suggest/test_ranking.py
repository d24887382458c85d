"""Ranking: each term of the score decides on its own, weights shift the order, tie-breaks."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartpip.suggest import (
    Candidate,
    RankingWeights,
    freshness_boost,
    normalize_query,
    rank,
    score,
    text_match,
    views_score,
)
from smartpip.suggest import ranking as ranking_module

NOW = datetime(2024, 6, 1, tzinfo=UTC)
QUERY = normalize_query("Lofi Mix")
DEFAULTS = RankingWeights()


def video(
    video_id: str,
    *,
    views: int | None = 1_000,
    age_days: float = 100.0,
    title: str = "lofi mix",
    description: str = "",
) -> Candidate:
    return Candidate(
        video_id=video_id,
        title=title,
        description=description,
        published_at=NOW - timedelta(days=age_days),
        view_count=views,
    )


def ids(items: list[Candidate]) -> list[str]:
    return [item.video_id for item in items]


# --- each term decides -------------------------------------------------------------------------


def test_views_decide_when_all_else_is_equal() -> None:
    popular, niche = video("b", views=1_000_000), video("a", views=1_000)
    assert ids(rank([niche, popular], QUERY, now=NOW)) == ["b", "a"]
    difference = score(popular, QUERY, now=NOW, weights=DEFAULTS) - score(
        niche, QUERY, now=NOW, weights=DEFAULTS
    )
    assert difference == pytest.approx(math.log1p(1_000_000) - math.log1p(1_000))


def test_views_outweigh_a_little_freshness() -> None:
    # The tie-break would prefer the newer video; the score prefers 1000x the views.
    old_popular = video("old", views=1_000_000, age_days=60)
    newer = video("new", views=1_000, age_days=30)
    assert ids(rank([newer, old_popular], QUERY, now=NOW)) == ["old", "new"]


def test_freshness_decides() -> None:
    # Slightly fewer views (the tie-break would prefer the stale one), but a day old.
    fresh = video("fresh", views=900, age_days=1)
    stale = video("stale", views=1_000, age_days=200)
    assert ids(rank([stale, fresh], QUERY, now=NOW)) == ["fresh", "stale"]


def test_title_match_beats_description_match() -> None:
    in_title = video("b-title", title="LOFI Mix!! \U0001f3b5", description="relax")
    in_description = video("a-desc", title="relax", description="the best lofi mix")
    # "a-desc" sorts first by video_id: only the score puts "b-title" ahead.
    assert ids(rank([in_description, in_title], QUERY, now=NOW)) == ["b-title", "a-desc"]


def test_text_match_outweighs_a_few_more_views() -> None:
    on_topic = video("on", views=100, title="lofi mix")
    off_topic = video("off", views=500, title="cat compilation")
    assert ids(rank([off_topic, on_topic], QUERY, now=NOW)) == ["on", "off"]


def test_partial_title_match_counts_the_share_of_terms() -> None:
    assert text_match(QUERY.terms, "lofi beats", "", DEFAULTS) == pytest.approx(1.0)
    assert text_match(QUERY.terms, "Mix \u2014 LoFi", "lofi", DEFAULTS) == pytest.approx(2.25)
    assert text_match(QUERY.terms, "", "", DEFAULTS) == 0.0


def test_text_match_is_whole_terms_after_normalization() -> None:
    assert text_match(("mix",), "Mixes & remixes", "", DEFAULTS) == 0.0
    assert text_match(("caf\u00e9",), "CAFE\u0301 \uff2a\uff21\uff3a\uff3a", "", DEFAULTS) == 2.0
    assert text_match(("rocknroll",), "Rock'n'Roll", "", DEFAULTS) == 2.0


# --- the weights shift the order as documented --------------------------------------------------


def test_freshness_weight_shifts_the_order() -> None:
    old_hit = video("hit", views=100_000, age_days=365)
    new_upload = video("new", views=1_000, age_days=0)
    # Defaults: ln(100001) = 11.51 against ln(1001) + 3 = 9.91.
    assert ids(rank([new_upload, old_hit], QUERY, now=NOW)) == ["hit", "new"]
    # freshness 6: the new upload scores 12.91.
    weights = RankingWeights(freshness=6.0)
    assert ids(rank([old_hit, new_upload], QUERY, now=NOW, weights=weights)) == ["new", "hit"]


def test_half_life_shifts_the_order() -> None:
    fresher_fewer = video("fresher", views=500, age_days=1)
    older_more = video("older", views=1_000, age_days=30)
    # Defaults: ln(501) + 3 * 0.5 ** (1/30) = 9.15 against ln(1001) + 3 * 0.5 = 8.41.
    assert ids(rank([older_more, fresher_fewer], QUERY, now=NOW)) == ["fresher", "older"]
    # A tiny half-life makes both boosts vanish: views alone decide.
    weights = RankingWeights(half_life_days=0.01)
    assert ids(rank([fresher_fewer, older_more], QUERY, now=NOW, weights=weights)) == [
        "older",
        "fresher",
    ]


def test_description_weight_above_title_weight_flips_text_match() -> None:
    in_title = video("title", title="lofi mix", description="relax")
    in_description = video("desc", title="relax", description="lofi mix")
    weights = RankingWeights(title_match=0.5, description_match=2.0)
    assert ids(rank([in_title, in_description], QUERY, now=NOW, weights=weights)) == [
        "desc",
        "title",
    ]


def test_views_weight_shifts_the_order() -> None:
    popular_off_topic = video("popular", views=50_000, title="cats")
    on_topic = video("on", views=1_000, title="lofi mix")
    # Defaults: ln(50001) - ln(1001) = 3.91 > 2.0 title match.
    assert ids(rank([on_topic, popular_off_topic], QUERY, now=NOW)) == ["popular", "on"]
    weights = RankingWeights(views=0.25)
    assert ids(rank([popular_off_topic, on_topic], QUERY, now=NOW, weights=weights)) == [
        "on",
        "popular",
    ]


# --- the terms themselves -----------------------------------------------------------------------


def test_freshness_halves_every_half_life() -> None:
    weights = RankingWeights(freshness=4.0, half_life_days=10.0)
    assert freshness_boost(NOW, NOW, weights) == 4.0
    assert freshness_boost(NOW - timedelta(days=10), NOW, weights) == pytest.approx(2.0)
    assert freshness_boost(NOW - timedelta(days=20), NOW, weights) == pytest.approx(1.0)


def test_future_dates_count_as_published_now() -> None:
    future = NOW + timedelta(days=3)
    assert freshness_boost(future, NOW, DEFAULTS) == DEFAULTS.freshness
    from_future = video("future", age_days=-3)
    just_now = video("now", age_days=0)
    assert score(from_future, QUERY, now=NOW, weights=DEFAULTS) == score(
        just_now, QUERY, now=NOW, weights=DEFAULTS
    )
    # Equal scores and views: the later publication time wins the tie-break.
    assert ids(rank([just_now, from_future], QUERY, now=NOW)) == ["future", "now"]


def test_missing_view_count_counts_as_zero() -> None:
    assert views_score(None, DEFAULTS) == 0.0
    assert views_score(0, DEFAULTS) == 0.0
    hidden, zero, some = video("hidden", views=None), video("zero", views=0), video("some", views=5)
    assert score(hidden, QUERY, now=NOW, weights=DEFAULTS) == score(
        zero, QUERY, now=NOW, weights=DEFAULTS
    )
    assert ids(rank([hidden, some, zero], QUERY, now=NOW)) == ["some", "hidden", "zero"]


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2024, 6, 1)  # the point of the test
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        rank([video("a")], QUERY, now=naive)
    item = attrs.evolve(video("a"), published_at=naive)
    with pytest.raises(ValueError, match="published_at must be timezone-aware"):
        rank([item], QUERY, now=NOW)


@pytest.mark.parametrize("field", [f.name for f in attrs.fields(RankingWeights)])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_weights_must_be_finite_and_positive(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field):
        RankingWeights(**{field: bad})


# --- tie-breaks and the returned objects --------------------------------------------------------


def test_tie_breaks_views_then_newer_then_video_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # Equal scores are near impossible with real inputs, so pin the score to isolate the keys.
    monkeypatch.setattr(ranking_module, "score", lambda *args, **kwargs: 1.0)
    items = [
        video("d", views=10, age_days=5),
        video("c", views=None, age_days=1),
        video("b", views=10, age_days=1),
        video("a", views=10, age_days=5),
        video("e", views=20, age_days=9),
    ]
    assert ids(rank(items, QUERY, now=NOW)) == ["e", "b", "a", "d", "c"]


def test_identical_videos_are_ordered_by_id() -> None:
    items = [video(video_id) for video_id in ["c", "a", "b"]]
    assert ids(rank(items, QUERY, now=NOW)) == ["a", "b", "c"]


@attrs.define
class ApiVideo:
    """Stands for the YouTube client's own type: more fields, mutable, not a Candidate."""

    video_id: str
    title: str
    description: str
    published_at: datetime
    view_count: int | None
    thumbnail_url: str = "https://i.ytimg.com/vi/x/default.jpg"


def test_rank_returns_the_same_objects_without_a_score() -> None:
    items = [
        ApiVideo("a", "cats", "", NOW - timedelta(days=3), 10),
        ApiVideo("b", "lofi mix", "", NOW - timedelta(days=3), 10),
    ]
    before = [attrs.asdict(item) for item in items]
    ranked = rank(items, QUERY, now=NOW)
    assert [item.video_id for item in ranked] == ["b", "a"]
    assert ranked[0] is items[1] and ranked[1] is items[0]
    assert ranked is not items
    assert [item.video_id for item in items] == ["a", "b"]  # the input list is not reordered
    assert [attrs.asdict(item) for item in items] == before  # nor the objects changed
    assert not any(hasattr(item, "score") for item in ranked)


def test_empty_input() -> None:
    assert rank([], QUERY, now=NOW) == []


_fixture = [
    video("a", views=1_000_000, age_days=400, title="Lofi Mix 2023"),
    video("b", views=50_000, age_days=10, title="lofi beats"),
    video("c", views=None, age_days=-1, title="mix"),
    video("d", views=300_000, age_days=45, title="jazz", description="lofi mix"),
    video("e", views=300_000, age_days=45, title="jazz", description="lofi mix"),
    video("f", views=0, age_days=0, title="LOFI MIX"),
]


@given(st.permutations(_fixture))
def test_order_does_not_depend_on_input_order(items: list[Candidate]) -> None:
    assert rank(items, QUERY, now=NOW) == rank(_fixture, QUERY, now=NOW)


# --- the worked example of docs/suggest-ranking.md ----------------------------------------------

_EXAMPLE = [
    Candidate("A", "Lofi Study Mix - beats to relax", "", NOW - timedelta(days=400), 2_000_000),
    Candidate("B", "lofi hip hop mix", "beats to study to", NOW - timedelta(days=10), 50_000),
    Candidate("C", "Piano for studying", "a calm lofi mix", NOW - timedelta(days=45), 300_000),
    Candidate("D", "Lofi study mix (new!)", "", NOW - timedelta(days=2), None),
]


def test_worked_example_in_the_docs() -> None:
    query = normalize_query("Lofi for the study MIX!!")
    assert query.text == "lofi study mix"
    scores = {c.video_id: round(score(c, query, now=NOW, weights=DEFAULTS), 2) for c in _EXAMPLE}
    assert scores == {"A": 16.51, "B": 14.70, "C": 14.01, "D": 4.86}
    assert ids(rank(_EXAMPLE, query, now=NOW)) == ["A", "B", "C", "D"]

    fresher = RankingWeights(freshness=6.0)
    assert ids(rank(_EXAMPLE, query, now=NOW, weights=fresher)) == ["B", "A", "C", "D"]
    assert round(score(_EXAMPLE[1], query, now=NOW, weights=fresher), 2) == 17.08

    slow = RankingWeights(half_life_days=1000.0)
    assert ids(rank(_EXAMPLE, query, now=NOW, weights=slow)) == ["A", "C", "B", "D"]
    assert round(score(_EXAMPLE[2], query, now=NOW, weights=slow), 2) == 15.85
    assert round(score(_EXAMPLE[1], query, now=NOW, weights=slow), 2) == 15.30
