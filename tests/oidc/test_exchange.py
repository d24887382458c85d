"""The authorization-code exchange (PKCE) at the token endpoint, and token revocation."""

from __future__ import annotations

import secrets

import httpx
import pytest

from smartpip.auth.oidc import (
    OidcClient,
    OidcMisconfigured,
    OidcRejected,
    OidcSettings,
    OidcUnavailable,
)
from tests.fakes.oidc_provider import CODE_LIFETIME, FakeOidcProvider, Mode, s256
from tests.oidc.conftest import HTTP_TIMEOUT, REDIRECT_URI
from tests.support.clock import FakeClock


def consent(provider: FakeOidcProvider, verifier: str, *, nonce: str = "nonce-1") -> str:
    """The user signs in at the provider: an authorization code for our client."""
    return provider.authorize(
        sub="user-1",
        nonce=nonce,
        redirect_uri=REDIRECT_URI,
        code_challenge=s256(verifier),
        client_id=provider.client_id,
    )


@pytest.fixture
def verifier() -> str:
    return secrets.token_urlsafe(48)


async def test_code_exchange_then_verification(
    provider: FakeOidcProvider, oidc: OidcClient, verifier: str
) -> None:
    code = consent(provider, verifier)

    id_token = await oidc.exchange_code(
        code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI
    )
    identity = await oidc.verify_id_token(id_token)

    assert (identity.issuer, identity.subject, identity.nonce) == (
        provider.issuer,
        "user-1",
        "nonce-1",
    )
    assert provider.token_requests == 1
    assert provider.token_auth == ["basic"]  # RFC 6749 2.3.1, never the secret in the body


async def test_credentials_are_form_encoded_inside_basic(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock, verifier: str
) -> None:
    provider.client_secret = "s3cret:with/odd+chars é"
    settings = OidcSettings(provider.issuer, provider.client_id, provider.client_secret)
    oidc = OidcClient(settings, http, clock=clock, monotonic=clock)

    id_token = await oidc.exchange_code(
        code=consent(provider, verifier), code_verifier=verifier, redirect_uri=REDIRECT_URI
    )

    assert (await oidc.verify_id_token(id_token)).subject == "user-1"


async def test_wrong_verifier(provider: FakeOidcProvider, oidc: OidcClient, verifier: str) -> None:
    code = consent(provider, verifier)

    with pytest.raises(OidcRejected, match=r"^code exchange refused: invalid_grant$"):
        await oidc.exchange_code(code=code, code_verifier=verifier + "x", redirect_uri=REDIRECT_URI)


async def test_wrong_redirect_uri(
    provider: FakeOidcProvider, oidc: OidcClient, verifier: str
) -> None:
    code = consent(provider, verifier)

    with pytest.raises(OidcRejected, match=r"^code exchange refused: invalid_grant$"):
        await oidc.exchange_code(
            code=code, code_verifier=verifier, redirect_uri="https://evil.example/"
        )


async def test_reused_code(provider: FakeOidcProvider, oidc: OidcClient, verifier: str) -> None:
    code = consent(provider, verifier)
    await oidc.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI)

    with pytest.raises(OidcRejected, match=r"^code exchange refused: invalid_grant$"):
        await oidc.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI)


async def test_unknown_and_expired_codes(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock, verifier: str
) -> None:
    code = consent(provider, verifier)
    clock.advance(CODE_LIFETIME)

    for attempt in (code, "4/never-issued"):
        with pytest.raises(OidcRejected, match="invalid_grant"):
            await oidc.exchange_code(
                code=attempt, code_verifier=verifier, redirect_uri=REDIRECT_URI
            )


async def test_wrong_client_secret_is_our_misconfiguration(
    provider: FakeOidcProvider,
    http: httpx.AsyncClient,
    clock: FakeClock,
    verifier: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = OidcSettings(provider.issuer, provider.client_id, "not-the-secret")
    oidc = OidcClient(settings, http, clock=clock, monotonic=clock)

    with pytest.raises(
        OidcMisconfigured, match="refused our client credentials: invalid_client"
    ) as raised:
        await oidc.exchange_code(
            code=consent(provider, verifier), code_verifier=verifier, redirect_uri=REDIRECT_URI
        )
    assert isinstance(raised.value, OidcUnavailable)  # callers that only know 503 still work
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("SMARTPIP_OIDC_CLIENT_SECRET" in message for message in warnings)
    assert "not-the-secret" not in caplog.text
    assert provider.client_secret not in caplog.text


async def test_client_not_allowed_the_code_grant_is_our_misconfiguration(
    provider: FakeOidcProvider, oidc: OidcClient, verifier: str
) -> None:
    provider.client_may_use_code_grant = False

    with pytest.raises(OidcMisconfigured, match="unauthorized_client"):
        await oidc.exchange_code(
            code=consent(provider, verifier), code_verifier=verifier, redirect_uri=REDIRECT_URI
        )


# What each broken token endpoint must be reported as. "slow": the provider would answer
# after ``slow_seconds`` (5 s); the shared client's read timeout (HTTP_TIMEOUT) must end the
# wait first, and the error names it (the 10 s exchange deadline would say "no answer
# within"). Which bound ended the wait is checked, not the clock.
TOKEN_ENDPOINT_FAILURES = {
    "down": "answered HTTP 503",
    "malformed": "answered without an id token",
    "huge": "answer over",
    "redirect": "answered HTTP 302",
    "slow": "ReadTimeout",
}


@pytest.mark.parametrize("mode", list(TOKEN_ENDPOINT_FAILURES))
async def test_token_endpoint_failures(
    provider: FakeOidcProvider, oidc: OidcClient, verifier: str, mode: Mode
) -> None:
    await oidc.verify_id_token(provider.make_id_token(sub="u", nonce="n"))  # discovery cached
    provider.mode = mode
    code = consent(provider, verifier)
    assert provider.slow_seconds > HTTP_TIMEOUT

    with pytest.raises(OidcUnavailable) as raised:
        await oidc.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI)
    assert not isinstance(raised.value, OidcMisconfigured)  # an outage, retryable
    assert TOKEN_ENDPOINT_FAILURES[mode] in str(raised.value)
    assert provider.token_requests == 1  # a redirect is not followed


async def test_exchange_with_the_provider_down_and_a_cold_cache(
    provider: FakeOidcProvider, oidc: OidcClient, verifier: str
) -> None:
    provider.mode = "down"

    with pytest.raises(OidcUnavailable, match="discovery unavailable"):
        await oidc.exchange_code(
            code=consent(provider, verifier), code_verifier=verifier, redirect_uri=REDIRECT_URI
        )
    assert provider.token_requests == 0


async def test_no_secret_in_logs_or_errors(
    provider: FakeOidcProvider,
    http: httpx.AsyncClient,
    clock: FakeClock,
    verifier: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_settings = OidcSettings(provider.issuer, provider.client_id, "wrong-secret-value")
    wrong = OidcClient(wrong_settings, http, clock=clock, monotonic=clock)
    oidc = OidcClient(
        OidcSettings(provider.issuer, provider.client_id, provider.client_secret),
        http,
        clock=clock,
        monotonic=clock,
    )
    code = consent(provider, verifier)
    id_token = await oidc.exchange_code(
        code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI
    )
    messages: list[str] = []
    for attempt in (
        wrong.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI),
        oidc.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI),
        oidc.verify_id_token(id_token[:-4] + "AAAA"),
    ):
        with pytest.raises((OidcRejected, OidcUnavailable)) as info:
            await attempt
        messages.append(str(info.value))
    provider.mode = "down"
    with pytest.raises(OidcUnavailable) as info:
        await oidc.revoke(id_token)
    messages.append(str(info.value))

    text = caplog.text + "\n".join(messages) + repr(wrong_settings)
    for secret in (provider.client_secret, "wrong-secret-value", code, verifier, id_token[:40]):
        assert secret not in text


async def test_revoke_is_idempotent(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    await oidc.revoke("1//refresh-token")
    await oidc.revoke("1//refresh-token")  # 400 invalid_token: already done

    assert provider.revoked == ["1//refresh-token"]
    assert provider.revoke_requests == 2


async def test_revoke_without_a_revocation_endpoint(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    provider.discovery_overrides["revocation_endpoint"] = None

    with pytest.raises(OidcUnavailable, match="no revocation endpoint"):
        await oidc.revoke("1//refresh-token")


@pytest.mark.parametrize("mode", ["down", "slow", "redirect"])
async def test_revoke_failures(provider: FakeOidcProvider, oidc: OidcClient, mode: Mode) -> None:
    await oidc.verify_id_token(provider.make_id_token(sub="u", nonce="n"))  # discovery cached
    provider.mode = mode

    with pytest.raises(OidcUnavailable):
        await oidc.revoke("1//refresh-token")
