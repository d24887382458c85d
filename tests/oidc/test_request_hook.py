"""The client reports each request to the provider by endpoint and outcome
(``oidc_requests_total``, read by the sign-in alerts in docs/monitoring.md)."""

from __future__ import annotations

import secrets

import httpx
import pytest

from smartpip.auth.oidc import OidcClient, OidcError, OidcSettings, OidcUnavailable
from tests.fakes.oidc_provider import FakeOidcProvider, s256
from tests.oidc.conftest import REDIRECT_URI
from tests.support.clock import FakeClock

Calls = list[tuple[str, str]]


def _client(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock, *, secret: str = ""
) -> tuple[OidcClient, Calls]:
    calls: Calls = []
    settings = OidcSettings(provider.issuer, provider.client_id, secret or provider.client_secret)
    client = OidcClient(
        settings,
        http,
        clock=clock,
        monotonic=clock,
        on_request=lambda endpoint, outcome: calls.append((endpoint, outcome)),
    )
    return client, calls


def _code(provider: FakeOidcProvider, verifier: str) -> str:
    return provider.authorize(
        sub="user-1",
        nonce="nonce-1",
        redirect_uri=REDIRECT_URI,
        code_challenge=s256(verifier),
        client_id=provider.client_id,
    )


async def _exchange(client: OidcClient, code: str, verifier: str) -> None:
    with pytest.raises(OidcError):
        await client.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI)


async def test_a_sign_in_reports_each_endpoint_ok(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    client, calls = _client(provider, http, clock)
    verifier = secrets.token_urlsafe(48)
    id_token = await client.exchange_code(
        code=_code(provider, verifier), code_verifier=verifier, redirect_uri=REDIRECT_URI
    )
    await client.verify_id_token(id_token)
    await client.revoke("some-google-token")
    assert calls == [
        ("discovery", "ok"),
        ("token", "ok"),
        ("jwks", "ok"),
        ("revocation", "ok"),
    ]


async def test_token_endpoint_outcomes(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = secrets.token_urlsafe(48)
    refused, refused_calls = _client(provider, http, clock, secret="not-the-secret")
    await _exchange(refused, _code(provider, verifier), verifier)
    assert refused_calls[-1] == ("token", "misconfigured")

    client, calls = _client(provider, http, clock)
    await _exchange(client, _code(provider, verifier), "x" * 43)  # wrong verifier
    assert calls[-1] == ("token", "rejected")
    provider.mode = "down"
    await _exchange(client, _code(provider, verifier), verifier)
    assert calls[-1] == ("token", "error")


async def test_key_set_and_discovery_failures(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    client, calls = _client(provider, http, clock)
    provider.jwks_mode = "down"
    token = provider.make_id_token(sub="u", nonce="n")
    with pytest.raises(OidcUnavailable):
        await client.verify_id_token(token)
    assert calls == [("discovery", "ok"), ("jwks", "error")]

    cold, cold_calls = _client(provider, http, clock)
    provider.mode = "down"
    with pytest.raises(OidcUnavailable):
        await cold.verify_id_token(token)
    assert ("discovery", "error") in cold_calls
