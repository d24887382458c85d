"""One upstream search per query however many requests, processes and failures: single-flight.

The fake's search is given latency so that the concurrent requests really overlap; each test
asserts the exact number of calls the fake received.
"""

from __future__ import annotations

import httpx
import trio

from tests.app.conftest import RunningApp
from tests.fakes.youtube import FakeYouTube
from tests.suggest_api.conftest import SuggestApp, User, ask, sign_in, suggest_state
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually

CONCURRENT = 20


async def ask_all(apps: list[RunningApp], user: User, q: str) -> list[httpx.Response]:
    """:data:`CONCURRENT` identical requests at once, spread evenly over ``apps``."""
    responses: list[httpx.Response] = []

    async def one(app: RunningApp) -> None:
        responses.append(await ask(app, user, q))

    async with trio.open_nursery() as nursery:
        for i in range(CONCURRENT):
            nursery.start_soon(one, apps[i % len(apps)])
    assert len(responses) == CONCURRENT
    return responses


def check_shared(responses: list[httpx.Response], query: str, *, stale_ok: bool = False) -> None:
    """All 200 with the same body; more than one waited for the search (they overlapped).

    With ``stale_ok``, requests holding a stale copy may have answered it (``STALE``) when the
    search took longer than they wait (a loaded machine).
    """
    assert [r.status_code for r in responses] == [200] * CONCURRENT, [r.text for r in responses]
    assert {r.content for r in responses} == {responses[0].content}
    assert responses[0].json()["query"] == query
    assert responses[0].json()["items"]
    caches = [r.headers["x-cache"] for r in responses]
    waited = {"MISS", "STALE"} if stale_ok else {"MISS"}
    assert set(caches) <= {"HIT", *waited}, caches
    assert sum(cache in waited for cache in caches) >= 2, caches


async def test_concurrent_requests_on_one_instance_make_one_search(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    youtube.inject("search", latency=0.3)
    responses = await ask_all([app], alice, "Rainy LOFI mix")
    check_shared(responses, "rainy lofi mix")
    assert youtube.calls == {"search": 1, "videos": 1}


async def test_concurrent_requests_over_two_replicas_make_one_search(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app() as one, suggest_app() as two:
        alice = await sign_in(one, "alice")
        youtube.inject("search", latency=0.3)
        responses = await ask_all([one, two], alice, "smooth jazz")
        check_shared(responses, "smooth jazz")
        assert youtube.calls == {"search": 1, "videos": 1}
        # Each replica had requests waiting for the one search: MISS on both, not only HIT.
        for app in (one, two):
            mine = [r for r in responses if str(r.url).startswith(app.url + "/")]
            assert len(mine) == CONCURRENT // 2
            assert "MISS" in {r.headers["x-cache"] for r in mine}


async def test_an_expired_entry_is_refreshed_once_over_two_replicas(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock()
    async with suggest_app(clock=clock) as one, suggest_app(clock=clock) as two:
        alice = await sign_in(one, "alice")
        for app in (one, two):  # cached in Redis and in both processes
            assert (await ask(app, alice, "jazz")).status_code == 200
        assert youtube.calls == {"search": 1, "videos": 1}
        clock.advance(1200)
        # Faster than the 0.5 s a stale copy waits: (nearly) everyone gets the refreshed answer.
        youtube.inject("search", latency=0.2)
        responses = await ask_all([one, two], alice, "jazz")
        check_shared(responses, "jazz", stale_ok=True)
        assert youtube.calls == {"search": 2, "videos": 2}


async def test_a_failed_search_is_not_repeated_by_the_replica_waiting_for_it(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app() as one, suggest_app() as two:
        alice = await sign_in(one, "alice")
        youtube.inject("search", latency=0.3, forbidden="accessNotConfigured")
        responses = await ask_all([one, two], alice, "pasta")
        statuses = sorted({r.status_code for r in responses})
        # The replica that searched answers 502; the other one, told by the released lease that
        # the search failed, answers 503 with a short Retry-After instead of searching again.
        assert statuses == [502, 503], [r.text for r in responses]
        for response in responses:
            assert response.headers["content-type"] == "application/problem+json"
            if response.status_code == 503:
                assert response.json()["code"] == "suggest_unavailable"
                assert int(response.headers["retry-after"]) >= 1
            else:
                assert response.json()["code"] == "upstream_error"
        assert youtube.calls == {"search": 1}


async def test_without_redis_suggest_still_answers_with_one_search_per_query(
    suggest_app: SuggestApp,
    youtube: FakeYouTube,
    redis_proxy: FaultProxy,
) -> None:
    async with suggest_app(
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0", rate_limit_suggest="1000/1m"
    ) as app:
        alice = await sign_in(app, "alice")

        assert await suggest_state(app) == "up"
        redis_proxy.mode = "down"

        # No shared cache, no lease, no shared quota counter: the gate's local allowance lets
        # this process search, and the guards' rate limit and revocation check go local.
        first = await ask(app, alice, "Rainy lofi")
        assert first.status_code == 200, first.text
        assert first.headers["x-cache"] == "MISS"
        assert [item["videoId"] for item in first.json()["items"]] == ["lofi0000002"]
        assert youtube.calls == {"search": 1, "videos": 1}

        youtube.inject("search", latency=0.3)
        responses = await ask_all([app], alice, "smooth jazz")
        check_shared(responses, "smooth jazz")
        assert youtube.calls == {"search": 2, "videos": 2}

        async def degraded() -> bool:
            return await suggest_state(app) == "degraded"

        await eventually(degraded)


async def test_a_request_that_stops_waiting_does_not_cancel_the_search(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app(suggest_wait_seconds="0.5") as app:
        alice = await sign_in(app, "alice")
        youtube.inject("search", latency=0.7)
        late = await ask(app, alice, "coffee")
        assert late.status_code == 503, late.text
        assert late.json()["code"] == "suggest_unavailable"
        assert int(late.headers["retry-after"]) >= 1
        assert youtube.calls["search"] == 1
        # The search went on: the retry joins it (MISS) or finds its result (HIT).
        retry = await ask(app, alice, "coffee")
        assert retry.status_code == 200, retry.text
        assert retry.headers["x-cache"] in {"MISS", "HIT"}
        assert youtube.calls == {"search": 1, "videos": 1}
