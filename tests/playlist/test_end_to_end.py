"""The whole playlist feature, both halves together: a user consents through the loopback
Google, and ``POST /v1/youtube/playlist`` writes to the loopback YouTube with the access tokens
the real ``StoredGrants`` gets from Google's token endpoint (refresh_token grant)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import attrs
import pytest
import trio

from tests.app.conftest import AuthAppFactory, RunningApp
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.fakes.youtube import FakeYouTube
from tests.fakes.youtube_playlists import FakePlaylists
from tests.playlist.conftest import KEYS, User, audit_events, connect, oauth_row

VIDEO_A = "dQw4w9WgXcQ"
VIDEO_B = "9bZkp7q19f0"


@attrs.frozen
class YouTube:
    """The loopback YouTube: its playlists, and the Google tokens it refuses."""

    playlists: FakePlaylists
    refused: set[str]
    base_url: str


@pytest.fixture
async def youtube(nursery: trio.Nursery, provider: FakeOidcProvider) -> YouTube:
    """YouTube's playlists, honouring every access token the fake Google issued and still
    accepts (``refused`` plays YouTube rejecting a token: expired, or revoked at Google)."""
    server = FakeYouTube()
    server.playlists = playlists = FakePlaylists()
    refused: set[str] = set()
    playlists.token_owner = lambda token: (
        "google-alice" if token in provider.access_tokens and token not in refused else None
    )
    await nursery.start(server.run)
    return YouTube(playlists, refused, server.base_url)


@pytest.fixture
async def app(auth_app_factory: AuthAppFactory, youtube: YouTube) -> AsyncIterator[RunningApp]:
    """An app with sign-in, the playlist on (consent and write) and the loopback YouTube."""
    keys = ",".join(KEYS)
    async with auth_app_factory(
        token_encryption_keys=keys, youtube_api_url=youtube.base_url
    ) as running:
        yield running


async def add(app: RunningApp, user: User, video_id: str) -> tuple[int, dict[str, object]]:
    response = await app.client.post(
        "/v1/youtube/playlist", json={"videoId": video_id}, headers=user.headers
    )
    return response.status_code, response.json()


async def test_consent_then_add_with_tokens_from_googles_token_endpoint(
    app: RunningApp,
    provider: FakeOidcProvider,
    alice: User,
    youtube: YouTube,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = await add(app, alice, VIDEO_A)
    assert (status, body["code"], body["reason"]) == (
        409,
        "playlist_not_connected",
        "not_connected",
    )
    assert (await connect(app, provider, alice)).status_code == 200
    status, body = await add(app, alice, VIDEO_A)
    assert status == 200, body
    assert body["playlistCreated"] is True
    (playlist,) = youtube.playlists.owned_by("google-alice").values()
    assert playlist.privacy == "private" and playlist.videos == [VIDEO_A]
    # The token YouTube saw is the one Google issued at the refresh: no other token exists.
    (used,) = {r.headers["authorization"] for r in youtube.playlists.requests}
    assert used == f"Bearer {provider.access_tokens[-1]}"
    status, body = await add(app, alice, VIDEO_B)
    assert status == 200 and body["playlistCreated"] is False
    assert playlist.videos == [VIDEO_A, VIDEO_B]
    refresh_tokens = list(provider.refresh_grants)
    logged = caplog.text
    for secret in [*provider.access_tokens, *refresh_tokens]:
        assert secret not in logged


async def test_a_token_youtube_refuses_is_refreshed_once(
    app: RunningApp, provider: FakeOidcProvider, alice: User, youtube: YouTube
) -> None:
    assert (await connect(app, provider, alice)).status_code == 200
    assert (await add(app, alice, VIDEO_A))[0] == 200
    refreshes = provider.refresh_requests
    youtube.refused.add(provider.access_tokens[-1])
    status, body = await add(app, alice, VIDEO_B)
    assert status == 200, body
    assert provider.refresh_requests == refreshes + 1


async def test_a_grant_revoked_at_google_disconnects_the_user(
    app: RunningApp, provider: FakeOidcProvider, alice: User, youtube: YouTube, pg_url: str
) -> None:
    assert (await connect(app, provider, alice)).status_code == 200
    assert (await add(app, alice, VIDEO_A))[0] == 200
    # The user removed our access in their Google account: the cached token stops working
    # and the refresh token is refused (invalid_grant).
    provider.refresh_grants.clear()
    youtube.refused.add(provider.access_tokens[-1])
    status, body = await add(app, alice, VIDEO_B)
    assert (status, body["code"], body["reason"]) == (
        409,
        "playlist_not_connected",
        "consent_revoked",
    )
    assert oauth_row(pg_url, alice.id) is None
    assert audit_events(pg_url, alice.id)[-1] == (
        "youtube_disconnected",
        {"reason": "invalid_grant"},
    )


async def test_youtube_refusing_even_a_fresh_token_disconnects_the_user(
    app: RunningApp, provider: FakeOidcProvider, alice: User, youtube: YouTube, pg_url: str
) -> None:
    assert (await connect(app, provider, alice)).status_code == 200
    youtube.playlists.token_owner = lambda token: None  # YouTube accepts none of Google's tokens
    status, body = await add(app, alice, VIDEO_A)
    assert (status, body["code"], body["reason"]) == (
        409,
        "playlist_not_connected",
        "consent_required",
    )
    assert oauth_row(pg_url, alice.id) is None
    assert audit_events(pg_url, alice.id)[-1] == (
        "youtube_disconnected",
        {"reason": "youtube_refused"},
    )
    connection = await app.client.get("/v1/youtube/connection", headers=alice.headers)
    assert connection.json()["connected"] is False
