"""Fixtures for the playlist write: the real app with a fake Grants, the loopback YouTube.

``playlist_app(**overrides)`` starts an app whose YouTube URL is the playlists fake's and
whose ``Grants`` is :class:`~tests.playlist.write.grants_fake.FakeGrants`; apps of one test
share the Redis prefix (two of them act as two replicas) and the JWT keys.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
import trio

from smartpip.playlist.crypto import generate_key
from tests.app.conftest import AppFactory, RunningApp
from tests.app.conftest import app_factory as app_factory  # the fixture, shared
from tests.fakes.youtube import FakeYouTube
from tests.fakes.youtube_playlists import FakePlaylists
from tests.history.conftest import KEY, User, sign_in
from tests.playlist.write.grants_fake import FakeGrants

__all__ = ["PlaylistApp", "User", "add", "check_problem", "connected", "playlist_state"]

PlaylistApp = Callable[..., AbstractAsyncContextManager[RunningApp]]

#: Valid YouTube video IDs (11 characters).
VIDEO_A = "dQw4w9WgXcQ"
VIDEO_B = "9bZkp7q19f0"
VIDEO_C = "kJQP7kiw5Fk"


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeYouTube:
    """The fake YouTube Data API serving the playlists fake, until the test ends."""
    fake = FakeYouTube()
    fake.playlists = FakePlaylists()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
def youtube(server: FakeYouTube) -> FakePlaylists:
    """The fake YouTube playlists (its state and faults)."""
    assert server.playlists is not None
    return server.playlists


@pytest.fixture
def grants(youtube: FakePlaylists) -> FakeGrants:
    """The fake consent half: users' access tokens, known to ``youtube``."""
    return FakeGrants(youtube)


@pytest.fixture
def playlist_app(app_factory: AppFactory, server: FakeYouTube, grants: FakeGrants) -> PlaylistApp:
    """Start apps with the playlist write on: ``async with playlist_app() as app``."""

    def factory(
        *, clock: Callable[[], float] = time.time, with_grants: bool = True, **overrides: str
    ) -> AbstractAsyncContextManager[RunningApp]:
        settings = {
            "jwt_keys": KEY,
            "youtube_api_url": server.base_url,
            # /v1/status reports playlist only where sign-in and the token keys are configured
            # (features.py); without grants the feature is left unconfigured, as in production.
            "oidc_client_id": "client",
            "oidc_client_secret": "secret",
            "token_encryption_keys": f"t1:{generate_key()}" if with_grants else "",
            **overrides,
        }
        return app_factory(clock=clock, playlist_grants=grants if with_grants else None, **settings)

    return factory


@pytest.fixture
async def app(playlist_app: PlaylistApp) -> AsyncIterator[RunningApp]:
    """One app with the default playlist settings."""
    async with playlist_app() as running:
        yield running


async def connected(app: RunningApp, grants: FakeGrants, sub: str) -> User:
    """A signed-in user of ``app`` who connected YouTube."""
    user = await sign_in(app, sub)
    grants.connect(user.id)
    return user


@pytest.fixture
async def alice(app: RunningApp, grants: FakeGrants) -> User:
    """A connected user."""
    return await connected(app, grants, "alice")


async def add(
    app: RunningApp,
    user: User,
    video_id: str = VIDEO_A,
    *,
    playlist_id: str | None = None,
    key: str | None = None,
    body: Any = None,
) -> httpx.Response:
    """``POST /v1/youtube/playlist`` as ``user``."""
    if body is None:
        body = {"videoId": video_id}
        if playlist_id is not None:
            body["playlistId"] = playlist_id
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await app.client.post("/v1/youtube/playlist", json=body, headers=headers)


def check_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a problem+json answer with ``status`` and ``code``; its document."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


async def playlist_state(app: RunningApp) -> str:
    """The playlist feature's state in ``/v1/status``."""
    state: str = (await app.client.get("/v1/status")).json()["features"]["playlist"]
    return state
