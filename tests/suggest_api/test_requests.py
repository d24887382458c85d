"""What a suggest request may ask and what it gets: normalization, validation, ranking, limits.

Each test counts the calls at the YouTube fake: a refused request never reaches it, and
queries that normalize alike share one search.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trio

from tests.app.conftest import AppFactory, RunningApp
from tests.fakes.youtube import FakeYouTube
from tests.fakes.youtube_corpus import CorpusVideo
from tests.history.conftest import KEY
from tests.suggest_api.conftest import API_KEY, SuggestApp, User, ask, check_problem, sign_in
from tests.support.clock import FakeClock

# The worked example of docs/suggest-ranking.md: "now" and the four videos, sent by the fake
# in the reverse of the expected order (D, C, B, A), so the order returned is the ranking's.
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _published(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


RANKING_CORPUS: tuple[CorpusVideo, ...] = (
    CorpusVideo("studyD00000", "Lofi study mix (new!)", "", "D", _published(2), view_count=None),
    CorpusVideo(
        "studyC00000", "Piano for studying", "a calm lofi mix", "C", _published(45), 300_000
    ),
    CorpusVideo(
        "studyB00000", "lofi hip hop mix", "beats to study to", "B", _published(10), 50_000
    ),
    CorpusVideo(
        "studyA00000",
        "Lofi Study Mix - beats to relax",
        "",
        "A",
        _published(400),
        2_000_000,
    ),
    # Equal scores (every term in the title, published "in the future", so all equally fresh)
    # but for tie0000002's single view: the tie-breaks alone order the other three.
    CorpusVideo("tie0000003", "Rain sounds", "", "T", _published(-1), view_count=None),
    CorpusVideo("tie0000001", "Rain sounds", "", "T", _published(-1), view_count=0),
    CorpusVideo("tie0000004", "Rain sounds", "", "T", _published(-3), view_count=0),
    CorpusVideo("tie0000002", "Rain sounds", "", "T", _published(-1), view_count=1),
)


def video_ids(response: httpx.Response) -> list[str]:
    """The ``videoId`` of each item of a 200 answer, in order."""
    assert response.status_code == 200, response.text
    return [item["videoId"] for item in response.json()["items"]]


# -- normalization and validation ----------------------------------------------------------------


async def test_queries_that_normalize_alike_share_one_entry(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    first = await ask(app, alice, "The Rainy  LOFI mix!!")
    assert first.headers["x-cache"] == "MISS"
    assert first.json()["query"] == "rainy lofi mix"
    assert video_ids(first) == ["lofi0000002"]
    assert youtube.last_params["search"]["q"] == "rainy lofi mix"
    for variant in (
        "rainy lofi mix",
        "\uff32\uff21\uff29\uff2e\uff39 lofi, MIX",  # full-width "RAINY" (NFKC)
        "rainy\tlofi\nmix",
        "a rainy lofi mix mix",
    ):
        response = await ask(app, alice, variant)
        assert response.headers["x-cache"] == "HIT", variant
        assert response.json() == {**first.json(), "source": "cache"}
    assert youtube.calls == {"search": 1, "videos": 1}

    # Word order is kept: another key, another search.
    reordered = await ask(app, alice, "mix lofi rainy")
    assert reordered.headers["x-cache"] == "MISS"
    assert reordered.json()["query"] == "mix lofi rainy"
    assert youtube.calls == {"search": 2, "videos": 2}


async def test_a_query_of_200_characters_is_accepted(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    q = "lofi " * 39 + "rainy"
    assert len(q) == 200
    response = await ask(app, alice, q)
    assert response.json()["query"] == "lofi rainy"
    assert video_ids(response) == ["lofi0000002"]
    assert youtube.calls["search"] == 1


INVALID: list[tuple[str, list[tuple[str, str]]]] = [
    ("no q", []),
    ("another parameter only", [("query", "lofi")]),
    ("q repeated", [("q", "lofi"), ("q", "jazz")]),
    ("q repeated, same value", [("q", "lofi"), ("q", "lofi")]),
    ("201 characters", [("q", "secretword " + "x" * 190)]),
    ("empty", [("q", "")]),
    ("blank", [("q", "   \t ")]),
    ("stopwords and punctuation only", [("q", "The a ... !!! of?")]),
    ("symbols only", [("q", "🎵🎶 ♪")]),
    ("NUL", [("q", "lofi\x00mix")]),
    ("escape", [("q", "lofi\x1b[31mmix")]),
    ("DEL", [("q", "lofi\x7f")]),
]


async def test_invalid_queries_are_400_invalid_request(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    for case, params in INVALID:
        response = await app.client.get("/v1/suggest", params=tuple(params), headers=alice.headers)
        body = check_problem(response, 400, "invalid_request")
        assert "secretword" not in response.text, case  # the query is never echoed
        assert body["detail"], case
    assert youtube.calls == {}


async def test_percent_encoding_that_is_not_utf8_is_400_before_any_search(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    # A lone surrogate (%ED%A0%80), a stray byte, a truncated sequence: each used to be read
    # as replacement characters and cost a search.
    for raw in ("%ED%A0%80", "lofi%FFmix", "caf%C3", "%C3%28"):
        response = await app.client.get(f"/v1/suggest?q={raw}", headers=alice.headers)
        body = check_problem(response, 400, "invalid_request")
        assert "UTF-8" in body["detail"], raw
        assert body["retryable"] is False
    # Valid percent-encoded UTF-8 is fine.
    assert (
        await app.client.get("/v1/suggest?q=caf%C3%A9", headers=alice.headers)
    ).status_code == 200
    assert youtube.calls["search"] == 1


async def test_configured_stopwords_are_dropped_too(
    app: RunningApp, suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    alice = await sign_in(app, "alice")
    kept = await ask(app, alice, "Rainy lofi mix (Official Video)")
    assert kept.json()["query"] == "rainy lofi mix official video"
    assert youtube.calls["search"] == 1

    async with suggest_app(suggest_stopwords="OFFICIAL, video,hd") as tuned:
        dropped = await ask(tuned, alice, "Rainy lofi mix (Official Video) [HD]")
        assert dropped.json()["query"] == "rainy lofi mix"
        assert video_ids(dropped) == ["lofi0000002"]
        assert youtube.calls["search"] == 2
        assert (await ask(tuned, alice, "rainy lofi mix")).headers["x-cache"] == "HIT"
        check_problem(await ask(tuned, alice, "the official video"), 400, "invalid_request")
        assert youtube.calls["search"] == 2


# -- ranking ---------------------------------------------------------------------------------


@pytest.fixture
async def ranking_youtube(nursery: trio.Nursery) -> FakeYouTube:
    """A fake serving :data:`RANKING_CORPUS`."""
    fake = FakeYouTube(api_key=API_KEY, corpus=RANKING_CORPUS)
    await nursery.start(fake.run)
    return fake


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        # The documented example: A's views win; B beats C (6x its views) by freshness and title.
        (None, "ABCD"),
        # Freshness counts: doubled, B overtakes A.
        ("freshness=6", "BACD"),
        # Decay counts: almost none, freshness no longer separates B from C; C's views win.
        ("half_life_days=1000", "ACBD"),
        # The text match counts: without it, C's views beat B's better title.
        ("title_match=0.01,description_match=0.01", "ACBD"),
        # Views count: without them, D (hidden count, fresh, full title) comes first.
        ("views=0.01", "DBAC"),
    ],
)
async def test_results_come_in_ranked_order(
    app_factory: AppFactory, ranking_youtube: FakeYouTube, weights: str | None, expected: str
) -> None:
    settings = {"suggest_weights": weights} if weights else {}
    async with app_factory(
        clock=FakeClock(NOW.timestamp()),
        jwt_keys=KEY,
        youtube_api_key=API_KEY,
        youtube_api_url=ranking_youtube.base_url,
        **settings,
    ) as app:
        alice = await sign_in(app, "alice")
        response = await ask(app, alice, "Lofi for the study MIX!!")
    assert response.json()["query"] == "lofi study mix"
    assert video_ids(response) == [f"study{letter}00000" for letter in expected]
    assert ranking_youtube.calls == {"search": 1, "videos": 1}
    assert all("score" not in item for item in response.json()["items"])


async def test_ties_are_broken_by_views_then_newer_then_video_id(
    app_factory: AppFactory, ranking_youtube: FakeYouTube
) -> None:
    async with app_factory(
        clock=FakeClock(NOW.timestamp()),
        jwt_keys=KEY,
        youtube_api_key=API_KEY,
        youtube_api_url=ranking_youtube.base_url,
    ) as app:
        alice = await sign_in(app, "alice")
        response = await ask(app, alice, "rain sounds")
    # tie0000002 has one view more; tie0000004 is the newest; tie0000001 (0 views) and
    # tie0000003 (hidden, counted as 0) differ only by ID.
    assert video_ids(response) == ["tie0000002", "tie0000004", "tie0000001", "tie0000003"]
    items = {item["videoId"]: item for item in response.json()["items"]}
    assert items["tie0000003"]["viewCount"] is None
    assert items["tie0000001"]["viewCount"] == 0


async def test_entities_are_unescaped_and_missing_counts_are_null(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app(clock=FakeClock(NOW.timestamp())) as app:
        alice = await sign_in(app, "alice")
        response = await ask(app, alice, "lofi")
    # 98 M views, then 1,234, then two without counts: the hidden one has a description
    # match too, the unlisted one (absent from videos.list) keeps search's snippet.
    assert video_ids(response) == ["lofi0000001", "lofi0000003", "lofi0000002", "lofi0000004"]
    items = response.json()["items"]
    assert [(i["title"], i["channelTitle"], i["viewCount"]) for i in items] == [
        ("Lofi hip hop radio & beats to relax", "Lofi Girl", 98_765_432),
        ("Don't stop: lofi for coding", "Code <Radio>", 1_234),
        ("Rainy lofi mix", "Chillhop & Co", None),
        ("Old lofi tape", "Tapes", None),
    ]
    assert "&amp;" not in response.text and "&#39;" not in response.text
    assert youtube.calls == {"search": 1, "videos": 1}


# -- who may ask, and how often ---------------------------------------------------------------


async def test_the_rate_limit_is_per_user(suggest_app: SuggestApp, youtube: FakeYouTube) -> None:
    async with suggest_app(rate_limit_suggest="3/1m") as app:
        alice = await sign_in(app, "alice")
        bob = await sign_in(app, "bob")
        for _ in range(3):
            assert (await ask(app, alice, "jazz")).status_code == 200
        refused = await ask(app, alice, "pasta")
        check_problem(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["ratelimit-policy"] == '"suggest";q=3;w=60'
        assert youtube.calls["search"] == 1  # the refused query was not searched

        other = await ask(app, bob, "jazz")
        assert other.status_code == 200
        assert other.headers["x-cache"] == "HIT"
        assert youtube.calls == {"search": 1, "videos": 1}


async def test_sign_in_is_required(app: RunningApp, youtube: FakeYouTube) -> None:
    anonymous = await app.client.get("/v1/suggest", params={"q": "lofi"})
    check_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = await app.client.get(
        "/v1/suggest", params={"q": "lofi"}, headers={"Authorization": "Bearer not-a-token"}
    )
    check_problem(forged, 401, "unauthorized")
    assert youtube.calls == {}


async def test_without_a_youtube_key_suggest_is_unavailable_and_disabled(
    app_factory: AppFactory,
) -> None:
    async with app_factory(jwt_keys=KEY) as app:
        assert app.resources.suggest is None
        alice = await sign_in(app, "alice")
        response = await ask(app, alice, "lofi")
        check_problem(response, 503, "suggest_unavailable")
        assert int(response.headers["retry-after"]) > 0
        status = await app.client.get("/v1/status")
        assert status.json()["features"]["suggest"] == "disabled"
        # Still a signed-in endpoint.
        check_problem(
            await app.client.get("/v1/suggest", params={"q": "lofi"}), 401, "unauthorized"
        )
