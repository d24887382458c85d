"""The consent round trip: ``/v1/youtube/connect/*`` and ``/v1/youtube/connection`` against the
loopback Google fake, in Google's wire formats."""

from __future__ import annotations

from datetime import datetime

import pytest

from smartpip.playlist.upstream import YOUTUBE_SCOPE
from tests.app.conftest import REDIRECT, AuthAppFactory, RunningApp
from tests.fakes.oidc_provider import FakeOidcProvider, s256
from tests.playlist.conftest import (
    KEYS,
    Consenting,
    User,
    audit_events,
    authorization_query,
    callback,
    connect,
    consent,
    oauth_row,
    signed_in,
    start,
)


async def test_start_sends_the_user_to_google_for_the_youtube_scope(
    app: RunningApp, provider: FakeOidcProvider, alice: User
) -> None:
    started = await start(app, alice)
    assert set(started) == {"authorizationUrl", "state", "expiresIn"}
    assert started["expiresIn"] == 600
    url = started["authorizationUrl"]
    assert url.startswith(f"{provider.issuer}/authorize?")
    query = authorization_query(url)
    assert query.pop("code_challenge")
    assert query.pop("nonce")
    assert query == {
        "client_id": provider.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": f"openid {YOUTUBE_SCOPE}",
        "include_granted_scopes": "true",
        "access_type": "offline",
        "prompt": "consent",
        "state": started["state"],
        "code_challenge_method": "S256",
    }
    # A new state every time.
    assert (await start(app, alice))["state"] != started["state"]


async def test_the_full_consent_flow_stores_the_grant_sealed(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    before = await app.client.get("/v1/youtube/connection", headers=alice.headers)
    assert before.status_code == 200
    assert before.json() == {
        "connected": False,
        "scopes": [],
        "connectedAt": None,
        "updatedAt": None,
    }
    response = await connect(app, provider, alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["connected"] is True
    assert body["scopes"] == sorted(["openid", YOUTUBE_SCOPE])
    assert datetime.fromisoformat(body["connectedAt"]) <= datetime.fromisoformat(body["updatedAt"])
    status = await app.client.get("/v1/youtube/connection", headers=alice.headers)
    assert status.json() == body
    # The code was redeemed with PKCE (the fake checks the verifier against the challenge).
    [refresh_token] = provider.refresh_grants
    row = oauth_row(pg_url, alice.id)
    assert row is not None
    subject, key_id, sealed, scopes = row
    assert (subject, key_id, sorted(scopes)) == ("google-alice", "t2", body["scopes"])
    assert refresh_token.encode() not in bytes(sealed)
    # The consent is audited with its scopes, never a token.
    events = audit_events(pg_url, alice.id)
    assert events[-1] == ("youtube_connected", {"scopes": "openid youtube"})
    states = await app.client.get("/v1/status")
    assert states.json()["features"]["playlist"] == "up"


async def test_reconnecting_replaces_the_token_and_keeps_connected_since(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    first = (await connect(app, provider, alice)).json()
    old = oauth_row(pg_url, alice.id)
    second = (await connect(app, provider, alice)).json()
    assert second["connectedAt"] == first["connectedAt"]
    assert second["updatedAt"] > first["updatedAt"]
    assert oauth_row(pg_url, alice.id) != old
    assert len(provider.refresh_grants) == 2


async def test_the_youtube_scope_unticked_is_refused_and_nothing_stored(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    response = await connect(app, provider, alice, scopes=["openid"])
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["code"] == "scope_not_granted" and problem["retryable"] is False
    assert oauth_row(pg_url, alice.id) is None
    status = await app.client.get("/v1/youtube/connection", headers=alice.headers)
    assert status.json()["connected"] is False


async def test_a_different_google_account_is_refused(
    app: RunningApp, provider: FakeOidcProvider, alice: User, bob: User, pg_url: str
) -> None:
    # Alice's browser is signed in to Bob's Google account when she consents.
    response = await connect(app, provider, alice, sub=bob.sub)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "account_mismatch"
    assert oauth_row(pg_url, alice.id) is None and oauth_row(pg_url, bob.id) is None


async def test_a_state_is_single_use(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    consenting = await consent(app, provider, alice)
    assert (await callback(app, alice, consenting)).status_code == 200
    # Replayed with a fresh code for the same state (and PKCE challenge): refused before Google.
    query_code = provider.authorize(
        sub=alice.sub,
        nonce="n",
        redirect_uri=REDIRECT,
        code_challenge=s256("x" * 43),
        client_id=provider.client_id,
    )
    requests = provider.token_requests
    replay = await callback(
        app, alice, consenting.__class__(query_code, consenting.state, REDIRECT)
    )
    assert replay.status_code == 403, replay.text
    assert replay.json()["code"] == "consent_rejected"
    assert "already used" in replay.json()["detail"]
    assert provider.token_requests == requests


async def test_a_state_is_bound_to_its_user_and_cannot_be_forged(
    app: RunningApp,
    provider: FakeOidcProvider,
    alice: User,
    bob: User,
    auth_app_factory: AuthAppFactory,
) -> None:
    consenting = await consent(app, provider, alice)
    stolen = await callback(app, bob, consenting)
    assert stolen.status_code == 403 and stolen.json()["code"] == "consent_rejected"
    forged = await app.client.post(
        "/v1/youtube/connect/callback",
        json={**consenting.body(), "state": consenting.state[:-2] + "AA"},
        headers=alice.headers,
    )
    assert forged.status_code == 403
    # Still unused: Alice can finish her own consent.
    assert (await callback(app, alice, consenting)).status_code == 200


async def test_a_code_google_refuses_is_403_and_spends_the_state(
    app: RunningApp, provider: FakeOidcProvider, alice: User
) -> None:
    consenting = await consent(app, provider, alice)
    bad = Consenting("4/not-a-code", consenting.state, consenting.redirect_uri)
    response = await callback(app, alice, bad)
    assert response.status_code == 403 and response.json()["code"] == "consent_rejected"
    assert "invalid_grant" in response.json()["detail"]


async def test_redirect_uri_must_be_allowed(app: RunningApp, alice: User) -> None:
    response = await app.client.post(
        "/v1/youtube/connect/start",
        json={"redirectUri": "https://evil.example/"},
        headers=alice.headers,
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"


async def test_routes_need_a_bearer_token(app: RunningApp) -> None:
    for method, path in (
        ("POST", "/v1/youtube/connect/start"),
        ("POST", "/v1/youtube/connect/callback"),
        ("GET", "/v1/youtube/connection"),
        ("DELETE", "/v1/youtube/connection"),
    ):
        response = await app.client.request(method, path)
        assert response.status_code == 401, (method, path)


async def test_google_down_at_the_callback_is_503_with_retry_after(
    app: RunningApp, provider: FakeOidcProvider, alice: User, pg_url: str
) -> None:
    consenting = await consent(app, provider, alice)
    provider.mode = "down"
    response = await callback(app, alice, consenting)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert oauth_row(pg_url, alice.id) is None


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"playlist": "off", "token_encryption_keys": ",".join(KEYS)}, "switched off"),
        ({}, "no keys"),
    ],
)
async def test_the_feature_switched_off_is_503_and_disabled(
    auth_app_factory: AuthAppFactory,
    provider: FakeOidcProvider,
    overrides: dict[str, str],
    why: str,
) -> None:
    async with auth_app_factory(**overrides) as app:
        user = await signed_in(app, provider, "google-carol")
        for method, path in (
            ("POST", "/v1/youtube/connect/start"),
            ("GET", "/v1/youtube/connection"),
            ("DELETE", "/v1/youtube/connection"),
        ):
            response = await app.client.request(
                method, path, headers=user.headers, json={"redirectUri": REDIRECT}
            )
            assert response.status_code == 503, (why, method, path, response.text)
            assert response.json()["code"] == "playlist_unavailable"
            assert response.headers["retry-after"] == "3600"
        assert (await app.client.get("/v1/status")).json()["features"]["playlist"] == "disabled"
