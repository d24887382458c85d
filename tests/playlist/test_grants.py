"""``StoredGrants``, the Grants the write half uses: access tokens from the stored refresh
token, kept in memory until shortly before they expire; invalid_grant disconnects cleanly."""

from __future__ import annotations

import pytest
import trio

from smartpip.playlist.connect import Connections
from smartpip.playlist.google import EXPIRY_MARGIN, StoredGrants
from smartpip.playlist.grants import GoogleUnavailable, GrantRevoked, Grants, NotConnected
from store.oauth_accounts import delete_oauth_account_if_sealed, select_sealed
from tests.app.conftest import RunningApp
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.playlist.conftest import User, audit_events, connect, oauth_row
from tests.support.clock import FakeClock


def connections(app: RunningApp) -> Connections:
    service = app.resources.youtube
    assert service is not None
    return service


@pytest.fixture
async def connected(app: RunningApp, provider: FakeOidcProvider, alice: User) -> User:
    response = await connect(app, provider, alice)
    assert response.status_code == 200, response.text
    return alice


def stored_grants(app: RunningApp, clock: FakeClock) -> StoredGrants:
    """A second instance over the app's database, keys and Google, on a test clock."""
    service = connections(app)
    return StoredGrants(app.resources.db, service._keyring, service._google, monotonic=clock)


async def test_is_the_grants_contract(app: RunningApp) -> None:
    grants: Grants = connections(app).grants  # mypy checks the Protocol
    assert isinstance(grants, StoredGrants)


async def test_access_token_is_refreshed_once_then_served_from_memory(
    app: RunningApp, provider: FakeOidcProvider, connected: User
) -> None:
    grants = connections(app).grants
    before = provider.refresh_requests
    token = await grants.access_token(connected.id)
    assert token == provider.access_tokens[-1] and token.startswith("ya29.")
    assert await grants.access_token(connected.id) == token
    assert provider.refresh_requests == before + 1
    # After YouTube answered 401 with it, the write asks again with refresh=True.
    fresh = await grants.access_token(connected.id, refresh=True)
    assert fresh != token and provider.refresh_requests == before + 2


async def test_tokens_are_refreshed_shortly_before_they_expire(
    app: RunningApp, provider: FakeOidcProvider, connected: User, clock: FakeClock
) -> None:
    grants = stored_grants(app, clock)
    first = await grants.access_token(connected.id)
    clock.advance(provider.access_token_lifetime - EXPIRY_MARGIN - 1)
    assert await grants.access_token(connected.id) == first
    clock.advance(1)
    assert await grants.access_token(connected.id) != first


async def test_concurrent_callers_share_one_refresh(
    app: RunningApp, provider: FakeOidcProvider, connected: User
) -> None:
    grants = connections(app).grants
    before = provider.refresh_requests
    tokens: list[str] = []

    async def ask() -> None:
        tokens.append(await grants.access_token(connected.id))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(ask)
    assert len(set(tokens)) == 1 and provider.refresh_requests == before + 1


async def test_not_connected(app: RunningApp, bob: User) -> None:
    with pytest.raises(NotConnected):
        await connections(app).grants.access_token(bob.id)


async def test_invalid_grant_disconnects_cleanly_and_says_so(
    app: RunningApp, provider: FakeOidcProvider, connected: User, pg_url: str
) -> None:
    grants = connections(app).grants
    await grants.access_token(connected.id)
    provider.refresh_grants.clear()  # the user removed our access in their Google account
    with pytest.raises(GrantRevoked):
        await grants.access_token(connected.id, refresh=True)
    assert oauth_row(pg_url, connected.id) is None
    assert audit_events(pg_url, connected.id)[-1] == (
        "youtube_disconnected",
        {"reason": "invalid_grant"},
    )
    status = await app.client.get("/v1/youtube/connection", headers=connected.headers)
    assert status.json()["connected"] is False
    with pytest.raises(NotConnected) as caught:
        await grants.access_token(connected.id)
    assert not isinstance(caught.value, GrantRevoked)


async def test_invalid_grant_keeps_a_reconnect_that_raced_it(
    app: RunningApp, provider: FakeOidcProvider, connected: User, pg_url: str
) -> None:
    db = app.resources.db
    refused = await db.read(select_sealed, connected.id)  # what the refresh was sent with
    assert refused is not None
    # The user reconnects (a new refresh token) while Google refuses the old one.
    assert (await connect(app, provider, connected)).status_code == 200
    row = oauth_row(pg_url, connected.id)
    assert await db.run(delete_oauth_account_if_sealed, refused) is False
    assert oauth_row(pg_url, connected.id) == row


async def test_google_down_keeps_the_grant(
    app: RunningApp, provider: FakeOidcProvider, connected: User, pg_url: str
) -> None:
    provider.mode = "down"
    with pytest.raises(GoogleUnavailable):
        await connections(app).grants.access_token(connected.id)
    assert oauth_row(pg_url, connected.id) is not None
    provider.mode = "ok"
    assert await connections(app).grants.access_token(connected.id)


async def test_disconnect_forgets_the_cached_token(app: RunningApp, connected: User) -> None:
    grants = connections(app).grants
    await grants.access_token(connected.id)
    response = await app.client.delete("/v1/youtube/connection", headers=connected.headers)
    assert response.status_code == 204
    with pytest.raises(NotConnected):
        await grants.access_token(connected.id)


async def test_a_grant_youtube_refuses_is_deleted_and_says_so(
    app: RunningApp, connected: User, bob: User, pg_url: str
) -> None:
    """The write half's ``disconnect`` (YouTube refused even a fresh token): the row and the
    cached token go, the audit log says why, and a user without a grant is left as is."""
    grants = connections(app).grants
    await grants.access_token(connected.id)
    await grants.disconnect(connected.id, reason="youtube_refused")
    assert oauth_row(pg_url, connected.id) is None
    assert audit_events(pg_url, connected.id)[-1] == (
        "youtube_disconnected",
        {"reason": "youtube_refused"},
    )
    with pytest.raises(NotConnected):
        await grants.access_token(connected.id)
    events = audit_events(pg_url, bob.id)
    await grants.disconnect(bob.id, reason="youtube_refused")
    assert audit_events(pg_url, bob.id) == events
