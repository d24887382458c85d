"""Fixtures for the playlist consent tests: apps with sign-in and the token keyring, signed-in
users, and the extension's consent round trip against the loopback Google fake."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import psycopg
import pytest

from smartpip.playlist.upstream import YOUTUBE_SCOPE
from tests.app.conftest import REDIRECT, AuthAppFactory, RunningApp
from tests.app.conftest import app_factory as app_factory  # the fixtures, shared
from tests.app.conftest import auth_app_factory as auth_app_factory
from tests.app.conftest import provider as provider
from tests.app.signin import bearer, sign_in
from tests.fakes.oidc_provider import FakeOidcProvider

__all__ = [
    "KEYS",
    "KEY_T1",
    "KEY_T2",
    "Consenting",
    "User",
    "authorization_query",
    "connect",
    "oauth_row",
    "start",
]

#: Two fixed AES-256 keys in the variable's encoding (32 distinct bytes each, not weak).
KEY_T1 = "t1:" + base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
KEY_T2 = "t2:" + base64.urlsafe_b64encode(bytes(range(100, 132))).rstrip(b"=").decode()
#: The token keyring of the apps here: t2 seals, t1 still opens.
KEYS = (KEY_T2, KEY_T1)
GRANTED = ("openid", YOUTUBE_SCOPE)


@attrs.frozen
class User:
    """A signed-in user: ID, Google subject, ``Authorization`` header."""

    id: uuid.UUID
    sub: str
    headers: dict[str, str]


@pytest.fixture
async def app(auth_app_factory: AuthAppFactory) -> AsyncIterator[RunningApp]:
    """An app with sign-in through the fake and the playlist feature on."""
    async with auth_app_factory(token_encryption_keys=",".join(KEYS)) as running:
        yield running


async def signed_in(app: RunningApp, provider: FakeOidcProvider, sub: str) -> User:
    """Sign ``sub`` in through the real code flow."""
    tokens = await sign_in(app, provider, sub)
    headers = bearer(tokens["accessToken"])
    me = await app.client.get("/v1/me", headers=headers)
    return User(uuid.UUID(me.json()["id"]), sub, headers)


@pytest.fixture
async def alice(app: RunningApp, provider: FakeOidcProvider) -> User:
    return await signed_in(app, provider, "google-alice")


@pytest.fixture
async def bob(app: RunningApp, provider: FakeOidcProvider) -> User:
    return await signed_in(app, provider, "google-bob")


async def start(app: RunningApp, user: User, redirect: str = REDIRECT) -> dict[str, Any]:
    """``POST /v1/youtube/connect/start``; the answer's body."""
    response = await app.client.post(
        "/v1/youtube/connect/start", json={"redirectUri": redirect}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def authorization_query(url: str) -> dict[str, str]:
    """The authorization URL's parameters (each once)."""
    query = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert all(len(values) == 1 for values in query.values()), query
    return {name: values[0] for name, values in query.items()}


@attrs.frozen
class Consenting:
    """A consent in progress: what Google redirected back with."""

    code: str
    state: str
    redirect_uri: str

    def body(self) -> dict[str, str]:
        return {"code": self.code, "state": self.state, "redirectUri": self.redirect_uri}


async def consent(
    app: RunningApp,
    provider: FakeOidcProvider,
    user: User,
    *,
    sub: str | None = None,
    scopes: Sequence[str] = GRANTED,
) -> Consenting:
    """Start, then play the user at Google's consent screen (as ``sub``, granting ``scopes``)."""
    started = await start(app, user)
    query = authorization_query(started["authorizationUrl"])
    code = provider.authorize(
        sub=user.sub if sub is None else sub,
        nonce=query["nonce"],
        redirect_uri=query["redirect_uri"],
        code_challenge=query["code_challenge"],
        client_id=query["client_id"],
        scopes=scopes,
        offline=query["access_type"] == "offline",
    )
    return Consenting(code, started["state"], query["redirect_uri"])


async def callback(app: RunningApp, user: User, consenting: Consenting) -> httpx.Response:
    """``POST /v1/youtube/connect/callback``."""
    return await app.client.post(
        "/v1/youtube/connect/callback", json=consenting.body(), headers=user.headers
    )


async def connect(
    app: RunningApp,
    provider: FakeOidcProvider,
    user: User,
    *,
    sub: str | None = None,
    scopes: Sequence[str] = GRANTED,
) -> httpx.Response:
    """The whole consent round trip; the callback's answer."""
    return await callback(app, user, await consent(app, provider, user, sub=sub, scopes=scopes))


def oauth_row(pg_url: str, user_id: uuid.UUID) -> tuple[Any, ...] | None:
    """The user's ``oauth_accounts`` row: subject, key_id, token_sealed, scopes."""
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT subject, key_id, token_sealed, scopes FROM oauth_accounts WHERE user_id = %s",
            (user_id,),
        ).fetchone()


def audit_events(pg_url: str, user_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    """The user's audit events (event, meta), oldest first."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT event, meta FROM audit_logs WHERE user_id = %s ORDER BY id", (user_id,)
        ).fetchall()
    return [(row[0], row[1]) for row in rows]
