"""Fixtures for the /v1/suggest tests: the real app pointed at the loopback YouTube fake.

``suggest_app(**overrides)`` starts an app whose YouTube key and URL are the fake's; apps of
one test share the Redis prefix (so two of them act as two replicas), the JWT keys (one token
works on all) and, when given, a :class:`FakeClock` as their wall clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from smartpip.runtime.tree import suggest_bookkeeping
from tests.app.conftest import AppFactory, RunningApp
from tests.app.conftest import app_factory as app_factory  # the fixture, shared
from tests.fakes.youtube import FakeYouTube
from tests.history.conftest import KEY, User, sign_in

__all__ = [
    "API_KEY",
    "SuggestApp",
    "User",
    "ask",
    "breaker_gauges",
    "cache_result",
    "check_problem",
    "metric",
    "sign_in",
    "suggest_state",
]

# Distinctive, so a leak into a log line or an answer is easy to spot.
API_KEY = "AIzaSy-suggest-test-key-0123456789"

SuggestApp = Callable[..., AbstractAsyncContextManager[RunningApp]]


@pytest.fixture
async def youtube(nursery: trio.Nursery) -> FakeYouTube:
    """The fake YouTube Data API, serving until the test ends."""
    fake = FakeYouTube(api_key=API_KEY)
    await nursery.start(fake.run)
    return fake


@pytest.fixture
def suggest_app(app_factory: AppFactory, youtube: FakeYouTube) -> SuggestApp:
    """Start apps configured for suggest against the fake: ``async with suggest_app() as app``."""

    def factory(
        *, clock: Callable[[], float] = time.time, **overrides: str
    ) -> AbstractAsyncContextManager[RunningApp]:
        settings = {
            "jwt_keys": KEY,
            "youtube_api_key": API_KEY,
            "youtube_api_url": youtube.base_url,
            # The warm job would search on the real clock's periods, beside what a test counts;
            # tests of warming run its body themselves.
            "jobs_paused": "warm",
            # The tests of budgets count every search; the reserve rule has its own tests.
            "suggest_reserve": "0",
            **overrides,
        }
        return app_factory(clock=clock, **settings)

    return factory


@pytest.fixture
async def app(suggest_app: SuggestApp) -> AsyncIterator[RunningApp]:
    """One app with the default suggest settings."""
    async with suggest_app() as running:
        yield running


@pytest.fixture
async def alice(app: RunningApp) -> User:
    """A signed-in user of ``app``."""
    return await sign_in(app, "alice")


async def metric(app: RunningApp, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` (labels exactly) on ``/metrics``; None if absent."""
    text = (await app.client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


async def ask(app: RunningApp, user: User, q: str) -> httpx.Response:
    """``GET /v1/suggest?q=<q>`` as ``user``."""
    return await app.client.get("/v1/suggest", params={"q": q}, headers=user.headers)


def cache_result(response: httpx.Response) -> str:
    """``X-Cache`` of a 200 answer."""
    assert response.status_code == 200, response.text
    return response.headers["x-cache"]


def check_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a problem+json answer with ``status`` and ``code``; its document."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


async def suggest_state(app: RunningApp) -> str:
    """Suggest's state in ``/v1/status``."""
    state: str = (await app.client.get("/v1/status")).json()["features"]["suggest"]
    return state


async def bookkeep(app: RunningApp) -> None:
    """One pass of suggest's bookkeeping (what the supervised child does every 5 s)."""
    bookkeeping = suggest_bookkeeping(app.resources)
    assert bookkeeping is not None
    await bookkeeping.run_once()


async def breaker_gauges(app: RunningApp) -> dict[str, float | None]:
    """``suggest_breaker_open`` per reason, after a bookkeeping pass refreshed the gauges."""
    await bookkeep(app)
    return {
        reason: await metric(app, "suggest_breaker_open", reason=reason)
        for reason in ("quota", "upstream", "key_invalid")
    }
