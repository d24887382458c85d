"""The extension's sign-in requests, for end-to-end tests against ``auth_app_factory`` apps
(the fixtures ``provider`` and ``auth_app_factory`` are in :mod:`tests.app.conftest`)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.app.conftest import REDIRECT, RunningApp
from tests.fakes.oidc_provider import FakeOidcProvider, s256

__all__ = ["assert_401", "bearer", "refresh", "sign_in", "sign_in_with_code", "start"]


async def start(app: RunningApp) -> str:
    """``POST /v1/auth/oidc/start``; the nonce."""
    response = await app.client.post("/v1/auth/oidc/start")
    assert response.status_code == 200, response.text
    nonce: str = response.json()["nonce"]
    return nonce


async def sign_in_with_code(
    app: RunningApp, provider: FakeOidcProvider, sub: str = "google-sub-1"
) -> httpx.Response:
    """The code flow with PKCE: start, consent at the provider, then the callback's answer."""
    nonce = await start(app)
    verifier = secrets.token_urlsafe(48)
    code = provider.authorize(
        sub=sub,
        nonce=nonce,
        redirect_uri=REDIRECT,
        code_challenge=s256(verifier),
        client_id=provider.client_id,
    )
    return await app.client.post(
        "/v1/auth/oidc/callback",
        json={"code": code, "codeVerifier": verifier, "redirectUri": REDIRECT, "nonce": nonce},
    )


async def sign_in(
    app: RunningApp, provider: FakeOidcProvider, sub: str = "sub-1"
) -> dict[str, Any]:
    """Sign ``sub`` in (a new token family); the tokens body."""
    response = await sign_in_with_code(app, provider, sub)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


def assert_401(response: httpx.Response, *, invalid_token: bool = False) -> None:
    """A 401 problem with a Bearer challenge (``error="invalid_token"`` when asked)."""
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if invalid_token:
        assert 'error="invalid_token"' in challenge


async def refresh(app: RunningApp, token: str) -> httpx.Response:
    """``POST /v1/auth/refresh``."""
    return await app.client.post("/v1/auth/refresh", json={"refreshToken": token})
