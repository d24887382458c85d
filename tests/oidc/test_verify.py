"""ID token verification: the happy path and every check an attacker might try to slip past."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import httpx
import pytest

from smartpip.auth.oidc import (
    GOOGLE_ISSUER,
    OidcClient,
    OidcRejected,
    OidcSettings,
    accepted_issuers,
)
from tests.fakes.oidc_provider import FakeOidcProvider, foreign_key
from tests.support.clock import FakeClock


async def rejected(oidc: OidcClient, token: str) -> str:
    """The message of the OidcRejected that verifying ``token`` raises (never the token)."""
    with pytest.raises(OidcRejected) as info:
        await oidc.verify_id_token(token)
    if len(token) > 8:
        assert token not in str(info.value)
    return str(info.value)


async def test_valid_token_verifies(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    token = provider.make_id_token(sub="user-1", nonce="nonce-1")

    identity = await oidc.verify_id_token(token)

    assert (identity.issuer, identity.subject, identity.nonce) == (
        provider.issuer,
        "user-1",
        "nonce-1",
    )


async def test_discovery_and_keys_are_fetched_once(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    assert (provider.discovery_requests, provider.jwks_requests) == (0, 0)  # lazy
    for n in range(3):
        await oidc.verify_id_token(provider.make_id_token(sub=f"user-{n}", nonce="n"))

    assert (provider.discovery_requests, provider.jwks_requests) == (1, 1)


async def test_issuer_with_trailing_slash_is_canonical(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    settings = OidcSettings(provider.issuer + "/", provider.client_id, provider.client_secret)
    client = OidcClient(settings, http, clock=clock, monotonic=clock)

    identity = await client.verify_id_token(provider.make_id_token(sub="u", nonce="n"))

    assert identity.issuer == provider.issuer


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": "someone-else.apps.googleusercontent.com"}, "id token audience mismatch"),
        ({"aud": ["someone-else", "another"]}, "id token audience mismatch"),
        ({"iss": "https://evil.example"}, "id token issuer mismatch"),
        ({"iss": "accounts.google.com"}, "id token issuer mismatch"),
        ({"azp": "someone-else"}, "id token authorized party mismatch"),
        ({"nonce": None}, "id token has no nonce"),
        ({"nonce": ""}, "id token has no nonce"),
        ({"sub": ""}, "id token subject invalid"),
    ],
)
async def test_claims_are_checked(
    provider: FakeOidcProvider, oidc: OidcClient, claims: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"sub": "user-1", "nonce": "n"} | claims
    token = provider.make_id_token(**arguments)

    assert await rejected(oidc, token) == message


async def test_several_audiences_need_our_azp(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    audiences = [provider.client_id, "other-client"]
    without = provider.make_id_token(sub="u", nonce="n", aud=audiences)
    with_azp = provider.make_id_token(sub="u", nonce="n", aud=audiences, azp=provider.client_id)

    assert await rejected(oidc, without) == "id token authorized party missing"
    assert (await oidc.verify_id_token(with_azp)).subject == "u"


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
async def test_required_claims(provider: FakeOidcProvider, oidc: OidcClient, claim: str) -> None:
    token = provider.make_id_token(sub="u", nonce="n", extra_claims={claim: None})

    assert await rejected(oidc, token) == f"id token lacks the {claim} claim"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": "tomorrow"}, "id token exp claim malformed"),
        ({"exp": math.nan}, "id token exp claim malformed"),  # Python's json accepts NaN
        ({"exp": True}, "id token exp claim malformed"),
        ({"iat": math.inf}, "id token iat claim malformed"),
        ({"nbf": "soon"}, "id token nbf claim malformed"),
    ],
)
async def test_malformed_time_claims(
    provider: FakeOidcProvider, oidc: OidcClient, claims: dict[str, Any], message: str
) -> None:
    token = provider.make_id_token(sub="u", nonce="n", extra_claims=claims)

    assert await rejected(oidc, token) == message


async def test_expiry_with_leeway(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    within = provider.make_id_token(sub="u", nonce="n", iat=clock.now - 3600, exp=clock.now - 30)
    past = provider.make_id_token(sub="u", nonce="n", iat=clock.now - 3600, exp=clock.now - 61)

    assert (await oidc.verify_id_token(within)).subject == "u"
    assert await rejected(oidc, past) == "id token expired"


async def test_iat_in_the_future(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    within = provider.make_id_token(sub="u", nonce="n", iat=clock.now + 30)
    future = provider.make_id_token(sub="u", nonce="n", iat=clock.now + 120)
    not_before = provider.make_id_token(sub="u", nonce="n", extra_claims={"nbf": clock.now + 120})

    assert (await oidc.verify_id_token(within)).subject == "u"
    assert await rejected(oidc, future) == "id token issued in the future"
    assert await rejected(oidc, not_before) == "id token not yet valid"


async def test_time_follows_the_injected_clock(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    token = provider.make_id_token(sub="u", nonce="n")
    await oidc.verify_id_token(token)

    clock.advance(3600 + 61)

    assert await rejected(oidc, token) == "id token expired"


async def test_alg_none_is_rejected_before_any_fetch(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    token = provider.make_id_token(sub="u", nonce="n", alg="none")

    assert await rejected(oidc, token) == "id token algorithm not allowed"
    assert (provider.discovery_requests, provider.jwks_requests) == (0, 0)


@pytest.mark.parametrize("secret", ["jwks", "pem"])
async def test_hs256_signed_with_public_material_is_rejected(
    provider: FakeOidcProvider, oidc: OidcClient, secret: str
) -> None:
    await oidc.verify_id_token(provider.make_id_token(sub="u", nonce="n"))  # warm the cache
    key = provider.jwks_text() if secret == "jwks" else provider.public_key_pem()
    token = provider.make_id_token(sub="u", nonce="n", alg="HS256", key=key)

    assert await rejected(oidc, token) == "id token algorithm not allowed"
    assert provider.jwks_requests == 1


@pytest.mark.parametrize("alg", ["RS384", "PS256", "ES256", "none ", "rs256"])
async def test_only_rs256_is_allowed(
    provider: FakeOidcProvider, oidc: OidcClient, alg: str
) -> None:
    genuine = provider.make_id_token(sub="u", nonce="n")
    forged = {"alg": alg, "kid": provider.current_kid, "typ": "JWT"}
    header = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    token = header + genuine[genuine.index(".") :]

    assert await rejected(oidc, token) == "id token algorithm not allowed"
    assert provider.jwks_requests == 0


async def test_signature_by_another_key_with_a_known_kid(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    token = provider.make_id_token(sub="u", nonce="n", key=foreign_key())

    assert await rejected(oidc, token) == "id token signature invalid"


async def test_tampered_payload(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    genuine = provider.make_id_token(sub="victim", nonce="n")
    other = provider.make_id_token(sub="attacker", nonce="n")
    header, _, signature = genuine.split(".")

    assert await rejected(oidc, f"{header}.{other.split('.')[1]}.{signature}") == (
        "id token signature invalid"
    )


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 20000, "@@.e30.e30", "..."])
async def test_malformed_tokens(oidc: OidcClient, token: str) -> None:
    assert await rejected(oidc, token) == "id token malformed"


async def test_missing_kid(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    token = provider.make_id_token(sub="u", nonce="n", kid="")

    assert await rejected(oidc, token) == "id token has no key id"


def test_legacy_google_issuer_only_for_google() -> None:
    assert accepted_issuers(GOOGLE_ISSUER) == (GOOGLE_ISSUER, "accounts.google.com")
    assert accepted_issuers(GOOGLE_ISSUER + "/") == (GOOGLE_ISSUER + "/", "accounts.google.com")
    assert accepted_issuers("https://issuer.example") == ("https://issuer.example",)
    assert accepted_issuers("https://accounts.google.com.evil.example") == (
        "https://accounts.google.com.evil.example",
    )
