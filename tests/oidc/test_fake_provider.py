"""The fake provider itself speaks the wire format other tests rely on."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.oidc_provider import FakeOidcProvider, Mode, s256
from tests.oidc.conftest import REDIRECT_URI


async def test_discovery_document(provider: FakeOidcProvider, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{provider.issuer}/.well-known/openid-configuration")

    document = response.json()
    assert document["issuer"] == provider.issuer
    assert document["jwks_uri"] == f"{provider.issuer}/jwks"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "max-age=3600" in response.headers["cache-control"]
    assert provider.discovery_requests == 1


async def test_jwks_follows_rotation(provider: FakeOidcProvider, http: httpx.AsyncClient) -> None:
    provider.jwks_max_age = 120
    first = provider.current_kid
    second = provider.rotate_keys()

    response = await http.get(f"{provider.issuer}/jwks")

    assert response.headers["cache-control"].startswith("public, max-age=120")
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [first, second]
    assert all(k["kty"] == "RSA" and k["use"] == "sig" and "d" not in k for k in keys)
    assert response.content == provider.jwks_text()

    provider.rotate_keys(keep_old=False)
    assert len((await http.get(f"{provider.issuer}/jwks")).json()["keys"]) == 1


async def test_token_endpoint_accepts_form_credentials(
    provider: FakeOidcProvider, http: httpx.AsyncClient
) -> None:
    verifier = "v" * 43
    code = provider.authorize(
        sub="u",
        nonce="n",
        redirect_uri=REDIRECT_URI,
        code_challenge=s256(verifier),
        client_id=provider.client_id,
    )
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT_URI,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
    }

    response = await http.post(f"{provider.issuer}/token", data=form)

    assert response.status_code == 200
    answer = response.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3599
    assert answer["id_token"].count(".") == 2
    assert provider.token_auth == ["form"]


@pytest.mark.parametrize(
    ("form", "authenticated", "status", "error"),
    [
        ({"grant_type": "authorization_code"}, False, 401, "invalid_client"),
        ({"grant_type": "password"}, True, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, True, 400, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "c"}, True, 400, "invalid_request"),
    ],
)
async def test_token_endpoint_errors(
    provider: FakeOidcProvider,
    http: httpx.AsyncClient,
    form: dict[str, str],
    authenticated: bool,
    status: int,
    error: str,
) -> None:
    basic = httpx.BasicAuth(provider.client_id, provider.client_secret)
    auth = basic if authenticated else httpx.USE_CLIENT_DEFAULT

    response = await http.post(f"{provider.issuer}/token", data=form, auth=auth)

    assert (response.status_code, response.json()["error"]) == (status, error)


async def test_token_endpoint_wants_a_form(
    provider: FakeOidcProvider, http: httpx.AsyncClient
) -> None:
    credentials = (provider.client_id, provider.client_secret)
    body = {"grant_type": "authorization_code"}

    response = await http.post(f"{provider.issuer}/token", json=body, auth=credentials)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("mode", "status"), [("down", 503), ("malformed", 200), ("huge", 200), ("redirect", 302)]
)
async def test_fault_modes(
    provider: FakeOidcProvider, http: httpx.AsyncClient, mode: Mode, status: int
) -> None:
    provider.jwks_mode = mode

    broken = await http.get(f"{provider.issuer}/jwks")
    working = await http.get(f"{provider.issuer}/.well-known/openid-configuration")

    assert broken.status_code == status
    assert working.status_code == 200
    assert provider.jwks_requests == 1
    if mode == "huge":
        assert len(broken.content) > 256 * 1024


async def test_unknown_route(provider: FakeOidcProvider, http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{provider.issuer}/nope")).status_code == 404
