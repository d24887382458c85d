"""Fixtures: the fake YouTube on loopback and the production client pointed at it.

Backoff waits go through :class:`RecordingSleep`, so retry tests are fast and can check the
jittered delays; HTTP timeouts stay real (real I/O rules out trio's MockClock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from smartpip.youtube import YouTubeClient, YouTubeSettings
from tests.fakes.youtube import FakeYouTube

__all__ = ["API_KEY", "Calls", "RecordingSleep"]

# Distinctive, so a leak into a log line or message is easy to spot.
API_KEY = "AIzaSy-test-secret-key-0123456789"
# Why 0.5 s: ample for loopback on a loaded CI machine; the timeout test stays short.
HTTP_TIMEOUT = 0.5


class RecordingSleep:
    """A ``sleep`` that records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await trio.lowlevel.checkpoint()


class Calls(list[tuple[str, str]]):
    """The ``on_call`` hook: records ``(method, outcome)``."""

    def __call__(self, method: str, outcome: str) -> None:
        self.append((method, outcome))


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeYouTube:
    """The fake API, serving until the test ends."""
    fake = FakeYouTube(api_key=API_KEY)
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client like the service's shared one."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        yield client


@pytest.fixture
def settings(fake: FakeYouTube) -> YouTubeSettings:
    """Client settings pointing at the fake, with short timeouts."""
    return YouTubeSettings(api_url=fake.base_url, api_key=API_KEY, timeout=HTTP_TIMEOUT)


@pytest.fixture
def sleep() -> RecordingSleep:
    """The client's backoff sleep."""
    return RecordingSleep()


@pytest.fixture
def calls() -> Calls:
    """The client's metrics hook."""
    return Calls()


@pytest.fixture
def client(
    settings: YouTubeSettings, http: httpx.AsyncClient, sleep: RecordingSleep, calls: Calls
) -> YouTubeClient:
    """The client under test."""
    return YouTubeClient(settings, http, sleep=sleep, on_call=calls)
