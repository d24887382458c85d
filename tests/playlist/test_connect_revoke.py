"""Withdrawal: ``DELETE /v1/youtube/connection`` and account deletion revoke the grant at
Google's revocation endpoint and delete the row whatever Google answers; no token is ever in
a log line, an export or an error body."""

from __future__ import annotations

import logging

import pytest

from smartpip.playlist.connect import REVOKE_DEADLINE
from smartpip.playlist.grants import GrantRevoked
from tests.app.conftest import RunningApp
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.playlist.conftest import User, audit_events, connect, oauth_row


async def connected(app: RunningApp, provider: FakeOidcProvider, user: User) -> str:
    """Connect ``user``; their refresh token (as Google issued it)."""
    before = set(provider.refresh_grants)
    response = await connect(app, provider, user)
    assert response.status_code == 200, response.text
    [token] = set(provider.refresh_grants) - before
    return token


async def test_disconnect_revokes_at_google_and_deletes(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    token = await connected(app, provider, alice)
    response = await app.client.delete("/v1/youtube/connection", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert provider.revoked == [token]
    assert token not in provider.refresh_grants
    assert oauth_row(pg_url, alice.id) is None
    status = await app.client.get("/v1/youtube/connection", headers=alice.headers)
    assert status.json()["connected"] is False
    assert audit_events(pg_url, alice.id)[-1] == ("youtube_disconnected", {"reason": "user"})
    # Idempotent: nothing left to revoke.
    again = await app.client.delete("/v1/youtube/connection", headers=alice.headers)
    assert again.status_code == 204 and provider.revoked == [token]


async def test_disconnect_with_google_down_still_deletes(
    app: RunningApp,
    provider: FakeOidcProvider,
    alice: User,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await connected(app, provider, alice)
    provider.mode = "down"
    response = await app.client.delete("/v1/youtube/connection", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert oauth_row(pg_url, alice.id) is None and provider.revoked == []
    assert any(
        r.levelno == logging.WARNING and "revocation failed" in r.getMessage()
        for r in caplog.records
    )


async def test_disconnect_with_google_hung_is_bounded(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    await connected(app, provider, alice)
    provider.mode, provider.slow_seconds = "slow", 30.0
    response = await app.client.delete("/v1/youtube/connection", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert oauth_row(pg_url, alice.id) is None
    assert response.elapsed.total_seconds() < REVOKE_DEADLINE + 2


async def test_account_deletion_revokes_the_grant_and_deletes_the_row(
    app: RunningApp, provider: FakeOidcProvider, alice: User, bob: User, pg_url: str
) -> None:
    token = await connected(app, provider, alice)
    bobs = await connected(app, provider, bob)
    response = await app.client.delete("/v1/me", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert provider.revoked == [token]
    assert oauth_row(pg_url, alice.id) is None
    assert oauth_row(pg_url, bob.id) is not None and bobs in provider.refresh_grants


async def test_account_deletion_with_google_down_still_deletes_the_row(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    await connected(app, provider, alice)
    provider.mode = "down"
    response = await app.client.delete("/v1/me", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert oauth_row(pg_url, alice.id) is None


async def test_export_shows_the_connection_without_any_token(
    app: RunningApp, provider: FakeOidcProvider, alice: User
) -> None:
    token = await connected(app, provider, alice)
    export = await app.client.get("/v1/me/export", headers=alice.headers)
    assert export.status_code == 200
    connection = export.json()["youtubeConnection"]
    assert set(connection) == {"scopes", "connectedAt", "updatedAt"}
    assert "youtube_connected" in [e["event"] for e in export.json()["auditEvents"]]
    assert token not in export.text
    for access in provider.access_tokens:
        assert access not in export.text


async def test_no_google_token_in_logs_or_error_bodies(
    app: RunningApp, provider: FakeOidcProvider, alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await connected(app, provider, alice)
    bodies = []
    grants = app.resources.youtube
    assert grants is not None
    await grants.grants.access_token(alice.id)
    provider.refresh_grants.clear()  # the user revokes access in their Google account
    with pytest.raises(GrantRevoked) as revoked:
        await grants.grants.access_token(alice.id, refresh=True)
    bodies.append(str(revoked.value))
    provider.mode = "down"
    bodies.append((await connect(app, provider, alice)).text)
    bodies.append((await app.client.delete("/v1/youtube/connection", headers=alice.headers)).text)
    text = "\n".join([caplog.text, *bodies])
    for secret in (token, *provider.access_tokens, provider.client_secret):
        assert secret not in text
