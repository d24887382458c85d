"""The suggest cache through the API: MISS then HIT, freshness, the stale horizon, warming.

Every test counts the calls the YouTube fake received: a cached answer costs none.
"""

from __future__ import annotations

import httpx

from smartpip.suggest import normalize_query
from tests.app.conftest import RunningApp
from tests.fakes.youtube import FakeYouTube
from tests.suggest_api.conftest import SuggestApp, User, ask, bookkeep, sign_in
from tests.support.clock import FakeClock

ITEM_FIELDS = {
    "provider",
    "videoId",
    "title",
    "channelTitle",
    "publishedAt",
    "thumbnailUrl",
    "url",
    "viewCount",
}


def cache_of(response: httpx.Response) -> tuple[str, str]:
    """``(X-Cache, Cache-Control)`` of a 200 answer."""
    assert response.status_code == 200, response.text
    return response.headers["x-cache"], response.headers["cache-control"]


async def test_miss_then_hit_makes_no_further_upstream_call(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock()
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        first = await ask(app, alice, "Rainy lofi")
        assert cache_of(first) == ("MISS", "private, max-age=1200")
        assert youtube.calls == {"search": 1, "videos": 1}
        assert youtube.last_params["search"]["q"] == "rainy lofi"

        clock.advance(100)
        second = await ask(app, alice, "Rainy lofi")
        assert cache_of(second) == ("HIT", "private, max-age=1100")
        assert youtube.calls == {"search": 1, "videos": 1}
        assert second.json() == {**first.json(), "source": "cache"}

    body = first.json()
    assert first.headers["content-type"] == "application/json"
    assert set(body) == {"query", "source", "items"}
    assert body["query"] == "rainy lofi"
    assert body["source"] == "youtube"
    assert [item["videoId"] for item in body["items"]] == ["lofi0000002"]
    assert all(set(item) == ITEM_FIELDS for item in body["items"])
    assert body["items"][0] == {
        "provider": "youtube",
        "videoId": "lofi0000002",
        "title": "Rainy lofi mix",
        "channelTitle": "Chillhop & Co",
        "publishedAt": "2023-01-05T08:30:00Z",
        "thumbnailUrl": "https://i.ytimg.com/vi/lofi0000002/hqdefault.jpg",
        "url": "https://www.youtube.com/watch?v=lofi0000002",
        "viewCount": None,
    }


async def test_real_clock_max_age_is_positive_and_at_most_the_ttl(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    for expected in ("MISS", "HIT"):
        response = await ask(app, alice, "smooth jazz")
        cache, control = cache_of(response)
        assert cache == expected
        prefix, _, max_age = control.partition("max-age=")
        assert prefix == "private, "
        assert 0 < int(max_age) <= 1200
    assert youtube.calls == {"search": 1, "videos": 1}


async def test_an_empty_answer_is_cached_too(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    for expected, source, q in (
        ("MISS", "youtube", "The Best  LOFI mix!!"),
        ("HIT", "cache", "best lofi mix"),
    ):
        response = await ask(app, alice, q)
        assert cache_of(response)[0] == expected
        assert response.json() == {"query": "best lofi mix", "source": source, "items": []}
    assert youtube.calls == {"search": 1}  # nothing found: no videos.list call


async def test_another_replica_hits_the_shared_cache(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app() as one, suggest_app() as two:
        alice = await sign_in(one, "alice")
        first = await ask(one, alice, "pasta")
        assert cache_of(first)[0] == "MISS"
        second = await ask(two, alice, "PASTA!")
        assert cache_of(second)[0] == "HIT"
        assert second.json() == {**first.json(), "source": "cache"}
        assert youtube.calls == {"search": 1, "videos": 1}


async def test_past_the_ttl_the_next_request_searches_again(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock()
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        assert cache_of(await ask(app, alice, "jazz")) == ("MISS", "private, max-age=1200")
        clock.advance(1199)
        assert cache_of(await ask(app, alice, "jazz")) == ("HIT", "private, max-age=1")
        assert youtube.calls["search"] == 1

        # The stale copy waits up to 0.5 s for the refresh; the fake answers well within it.
        clock.advance(1)
        assert cache_of(await ask(app, alice, "jazz")) == ("MISS", "private, max-age=1200")
        assert youtube.calls == {"search": 2, "videos": 2}
        assert cache_of(await ask(app, alice, "jazz")) == ("HIT", "private, max-age=1200")
        assert youtube.calls == {"search": 2, "videos": 2}


async def test_past_the_stale_horizon_the_old_copy_is_not_served(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock()
    settings = {"suggest_ttl_seconds": "600", "suggest_stale_seconds": "900"}
    async with suggest_app(clock=clock, **settings) as app:
        alice = await sign_in(app, "alice")
        fresh = await ask(app, alice, "pasta recipe")
        assert cache_of(fresh) == ("MISS", "private, max-age=600")

        youtube.inject("search", forbidden="accessNotConfigured")  # every search fails
        clock.advance(899)
        stale = await ask(app, alice, "pasta recipe")
        assert cache_of(stale) == ("STALE", "private, max-age=0")
        assert stale.json() == {**fresh.json(), "source": "cache"}
        assert youtube.calls["search"] == 2

        clock.advance(1)  # now at the horizon: the copy is gone
        gone = await ask(app, alice, "pasta recipe")
        assert gone.status_code == 502, gone.text
        assert gone.headers["content-type"] == "application/problem+json"
        assert gone.json()["code"] == "upstream_error"
        assert youtube.calls["search"] == 3

        youtube.inject("search", forbidden=None)
        assert cache_of(await ask(app, alice, "pasta recipe")) == ("MISS", "private, max-age=600")
        assert youtube.calls == {"search": 4, "videos": 2}


async def test_popular_lists_the_most_asked_normalized_queries_first(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    asked = [
        "Rainy LOFI!!",
        "smooth jazz",
        "rainy lofi",
        "pasta",
        "Smooth  JAZZ",
        "the rainy lofi",
    ]
    for q in asked:
        assert (await ask(app, alice, q)).status_code == 200
    suggest = app.resources.suggest
    assert suggest is not None
    await bookkeep(app)
    assert await suggest.popular(10) == ["rainy lofi", "smooth jazz", "pasta"]
    assert await suggest.popular(2) == ["rainy lofi", "smooth jazz"]
    assert youtube.calls["search"] == 3


async def test_refresh_fills_the_cache_for_the_api(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    suggest = app.resources.suggest
    assert suggest is not None
    assert await suggest.refresh(normalize_query("Smooth JAZZ for a cafe")) is True
    assert youtube.calls == {"search": 1, "videos": 1}
    assert youtube.last_params["search"]["q"] == "smooth jazz cafe"

    response = await ask(app, alice, "smooth jazz CAFE")
    assert cache_of(response)[0] == "HIT"
    assert response.json()["query"] == "smooth jazz cafe"
    assert youtube.calls == {"search": 1, "videos": 1}

    # Already fresh: nothing to do.
    assert await suggest.refresh(normalize_query("smooth jazz cafe")) is False
    assert youtube.calls == {"search": 1, "videos": 1}


async def test_refresh_with_a_freshness_floor_searches_again(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock()
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        suggest = app.resources.suggest
        assert suggest is not None
        assert (await ask(app, alice, "jazz")).headers["x-cache"] == "MISS"
        clock.advance(300)  # 900 s of freshness left
        assert not await suggest.refresh(normalize_query("jazz"), min_fresh_seconds=800)
        assert youtube.calls == {"search": 1, "videos": 1}
        # Not fresh for 1,000 s more: the warming job refreshes it.
        assert await suggest.refresh(normalize_query("jazz"), min_fresh_seconds=1000)
        assert youtube.calls == {"search": 2, "videos": 2}
