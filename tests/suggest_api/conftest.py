"""Fixtures for the /v1/suggest tests: the real app pointed at the loopback YouTube fake.

``suggest_app(**overrides)`` starts an app whose YouTube key and URL are the fake's; apps of
one test share the Redis prefix (so two of them act as two replicas), the JWT keys (one token
works on all) and, when given, a :class:`FakeClock` as their wall clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import AppFactory, RunningApp
from tests.app.conftest import app_factory as app_factory  # the fixture, shared
from tests.fakes.youtube import FakeYouTube
from tests.history.conftest import KEY, User, sign_in

__all__ = ["API_KEY", "SuggestApp", "User", "sign_in"]

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
