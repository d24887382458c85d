"""YouTube failing under the running app: 5xx, the upstream breaker, slowness, unusable
answers, a rejected key. Cached answers keep being served; failures are never cached.

The client retries a 5xx twice (real jittered backoff, 0.1-0.6 s a request), so the tests keep
the number of such requests low.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio

from smartpip.suggest.service import Suggester, SuggestSettings
from smartpip.youtube import YouTubeSettings
from tests.app.conftest import RunningApp
from tests.fakes.youtube import FakeYouTube
from tests.suggest_api.conftest import (
    API_KEY,
    SuggestApp,
    User,
    ask,
    breaker_gauges,
    cache_result,
    metric,
    sign_in,
    suggest_state,
)
from tests.support.clock import FakeClock
from tests.support.polling import eventually

TTL = 1200  # SMARTPIP_SUGGEST_TTL_SECONDS default
# A hang guard, not a speed check: several times the waits the tests below are about, and
# shorter than every other way their requests could end (see ``other_bounds``).
HANG_GUARD = 5
COOLDOWN = 60  # the upstream breaker's cool-down (smartpip.suggest.quota)


def suggester(app: RunningApp) -> Suggester:
    assert app.resources.suggest is not None
    return app.resources.suggest


def other_bounds(settings: SuggestSettings) -> dict[str, float]:
    """The ways a request could end, with YouTube held, besides the wait under test."""
    client = YouTubeSettings(api_url="https://unused.invalid", api_key="unused")
    return {
        "the client gives up on YouTube": (client.retries + 1) * client.timeout,
        "the flight's deadline": settings.flight_seconds,
    }


def assert_upstream_error(response: httpx.Response) -> None:
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_error"
    assert "retry-after" not in response.headers


def retry_after_of_unavailable(response: httpx.Response) -> int:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "suggest_unavailable"
    return int(response.headers["retry-after"])


async def test_5xx_is_retried_twice_then_502_and_not_cached(
    app: RunningApp, alice: User, youtube: FakeYouTube
) -> None:
    youtube.fail_next(100, method="search")
    assert_upstream_error(await ask(app, alice, "lofi beats"))
    assert youtube.calls == {"search": 3}  # 1 + 2 retries, no videos.list
    search_errors = {"method": "search", "outcome": "error"}
    assert await metric(app, "suggest_upstream_calls_total", **search_errors) == 3.0

    youtube.fail_next(0, method="search")
    assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
    assert youtube.calls == {"search": 4, "videos": 1}
    assert await suggest_state(app) == "up"  # one failure does not open the breaker


async def test_five_failed_searches_open_the_breaker_for_the_cool_down(
    suggest_app: SuggestApp, youtube: FakeYouTube, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
        assert youtube.calls == {"search": 1, "videos": 1}

        youtube.fail_next(100, method="search")
        for n, query in enumerate(["alpha", "bravo", "charlie", "delta", "echo"], start=1):
            assert_upstream_error(await ask(app, alice, query))
            assert youtube.calls["search"] == 1 + 3 * n
        assert any(
            r.levelno == logging.WARNING and "suggest breaker open" in r.getMessage()
            for r in caplog.records
        )

        # Open: no call, 503 for the cool-down (its TTL runs in Redis, in real time).
        retry_after = retry_after_of_unavailable(await ask(app, alice, "foxtrot"))
        assert COOLDOWN - 5 <= retry_after <= COOLDOWN
        assert youtube.calls == {"search": 16, "videos": 1}

        # The cached query is served meanwhile, fresh and then stale, with no call.
        assert cache_result(await ask(app, alice, "lofi beats")) == "HIT"
        clock.advance(TTL + 1)
        assert cache_result(await ask(app, alice, "lofi beats")) == "STALE"
        assert youtube.calls == {"search": 16, "videos": 1}

        assert await breaker_gauges(app) == {"quota": 0.0, "upstream": 1.0, "key_invalid": 0.0}
        assert await suggest_state(app) == "degraded"


async def test_a_slow_upstream_answers_stale_within_a_second(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock()
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        first = await ask(app, alice, "lofi beats")
        assert cache_result(first) == "MISS"
        clock.advance(TTL + 1)

        # "A stale answer within a second" (the reliability guide): a request holding a stale
        # copy waits for the refresh at most stale_wait_seconds. YouTube is held, so nothing
        # but that wait can end the request within the hang guard, and its answer says STALE
        # (waiting for the refresh would answer MISS): the setting in force is checked, not
        # the clock.
        settings = suggester(app).settings
        assert settings.stale_wait_seconds <= 1.0
        assert min(other_bounds(settings).values()) > HANG_GUARD
        answer = trio.Event()
        youtube.inject("search", hold=answer)
        with trio.fail_after(HANG_GUARD):
            stale = await ask(app, alice, "lofi beats")
        assert cache_result(stale) == "STALE"
        assert stale.headers["cache-control"] == "private, max-age=0"
        assert stale.json() == {**first.json(), "source": "cache"}

        # The refresh goes on in the background (one search for every waiting request) and
        # fills the cache once YouTube answers.
        answer.set()

        async def refreshed() -> bool:
            return cache_result(await ask(app, alice, "lofi beats")) != "STALE"

        await eventually(refreshed)
        assert youtube.calls == {"search": 2, "videos": 2}
        assert cache_result(await ask(app, alice, "lofi beats")) == "HIT"
        assert youtube.calls == {"search": 2, "videos": 2}


async def test_a_slow_upstream_without_a_cached_copy_is_503_within_the_wait(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app(suggest_wait_seconds="1") as app:
        alice = await sign_in(app, "alice")
        # YouTube is held: only SMARTPIP_SUGGEST_WAIT_SECONDS can end the request within the
        # hang guard, and its 503 says so.
        settings = suggester(app).settings
        assert settings.wait_seconds == 1.0
        assert min(other_bounds(settings).values()) > HANG_GUARD
        answer = trio.Event()
        youtube.inject("search", hold=answer)
        try:
            with trio.fail_after(HANG_GUARD):
                response = await ask(app, alice, "lofi beats")
            assert 1 <= retry_after_of_unavailable(response) <= 5
            assert response.json()["detail"] == "YouTube did not answer in time"
            assert youtube.calls == {"search": 1}
        finally:
            answer.set()


@pytest.mark.parametrize(
    "fault",
    [{"malformed": True}, {"oversized": True}, {"redirect": True}],
    ids=["malformed", "oversized", "redirect"],
)
async def test_an_unusable_answer_is_502_not_retried_and_not_cached(
    app: RunningApp, alice: User, youtube: FakeYouTube, fault: dict[str, Any]
) -> None:
    youtube.inject("search", **fault)
    assert_upstream_error(await ask(app, alice, "lofi beats"))
    assert youtube.calls == {"search": 1}  # not retryable: a retry would cost quota again
    search_errors = {"method": "search", "outcome": "error"}
    assert await metric(app, "suggest_upstream_calls_total", **search_errors) == 1.0

    youtube.inject("search", **{name: False for name in fault})
    assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
    assert youtube.calls == {"search": 2, "videos": 1}


async def test_a_rejected_key_takes_suggest_down_without_leaking_it(
    suggest_app: SuggestApp,
    youtube: FakeYouTube,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_key = "wrong-key-AIzaSy-never-log-me-9876543210"
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    async with suggest_app(youtube_api_key=wrong_key) as app:
        alice = await sign_in(app, "alice")
        assert await suggest_state(app) == "up"

        first = await ask(app, alice, "lofi beats")
        assert retry_after_of_unavailable(first) == 3600
        assert youtube.calls == {"search": 1}
        assert youtube.last_params["search"]["key"] == wrong_key  # the fake did see it

        second = await ask(app, alice, "smooth jazz")
        assert 3590 <= retry_after_of_unavailable(second) <= 3600
        assert youtube.calls == {"search": 1}  # the breaker holds further calls

        status = await app.client.get("/v1/status")
        assert status.json()["features"]["suggest"] == "down"
        gauges = await breaker_gauges(app)
        assert gauges == {"quota": 0.0, "upstream": 0.0, "key_invalid": 1.0}
        outcome = {"method": "search", "outcome": "key_invalid"}
        assert await metric(app, "suggest_upstream_calls_total", **outcome) == 1.0
        metrics = await app.client.get("/metrics")
        for response in (first, second, status, metrics):
            bodies.append(response.text + repr(response.headers))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("YouTube rejected the API key" in message for message in warnings)
    logged = caplog.text + "".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for text in (logged, *bodies):
        assert wrong_key not in text
        assert API_KEY not in text
