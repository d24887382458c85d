"""The signing-key set: caching, rotation, unknown kids, and an issuer that is down or broken."""

from __future__ import annotations

import logging
import secrets

import httpx
import pytest
import trio

from smartpip.auth.oidc import OidcClient, OidcRejected, OidcSettings, OidcUnavailable
from tests.fakes.oidc_provider import FakeOidcProvider, Mode, foreign_key
from tests.oidc.conftest import HTTP_TIMEOUT
from tests.support.clock import FakeClock


def good_token(provider: FakeOidcProvider, *, kid: str | None = None) -> str:
    """A valid token for user-1, by default signed with the current key."""
    return provider.make_id_token(sub="user-1", nonce="n", kid=kid)


async def test_unknown_kid_refetches_once_then_rejects(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    await oidc.verify_id_token(good_token(provider))
    stranger = provider.make_id_token(sub="u", nonce="n", kid="not-ours", key=foreign_key())

    for _ in range(3):
        with pytest.raises(OidcRejected, match=r"^unknown signing key$"):
            await oidc.verify_id_token(stranger)

    assert provider.jwks_requests == 2  # the warm-up, then one refetch for the unknown kid


async def test_unknown_kid_refetch_again_after_the_cooldown(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    await oidc.verify_id_token(good_token(provider))
    for seconds in (0, 30, 31):  # the cool-down is 60 s
        clock.advance(seconds)
        with pytest.raises(OidcRejected, match="unknown signing key"):
            await oidc.verify_id_token(good_token(provider, kid=secrets.token_hex(8)))

    assert provider.jwks_requests == 3


async def flood(oidc: OidcClient, tokens: list[str]) -> list[str]:
    """Verify ``tokens`` concurrently; the outcome of each: a subject or an error message."""
    outcomes: list[str] = []

    async def verify(token: str) -> None:
        try:
            outcomes.append((await oidc.verify_id_token(token)).subject)
        except OidcRejected as error:
            outcomes.append(str(error))

    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(verify, token)
    return outcomes


async def test_flood_of_unknown_kids_causes_at_most_one_refetch(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    await oidc.verify_id_token(good_token(provider))
    tokens = [good_token(provider, kid=secrets.token_hex(8)) for _ in range(50)]

    outcomes = await flood(oidc, tokens)

    assert outcomes == ["unknown signing key"] * 50
    assert provider.jwks_requests == 2


async def test_single_flight_without_cooldown(
    provider: FakeOidcProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With no cool-down at all, concurrent misses still share the one fetch in flight."""
    settings = OidcSettings(
        provider.issuer, provider.client_id, provider.client_secret, kid_refetch_cooldown=0
    )
    oidc = OidcClient(settings, http, clock=clock, monotonic=clock)
    await oidc.verify_id_token(good_token(provider))
    provider.jwks_mode, provider.slow_seconds = "slow", 0.2  # all 50 arrive during the fetch
    tokens = [good_token(provider, kid=secrets.token_hex(8)) for _ in range(50)]

    outcomes = await flood(oidc, tokens)

    assert outcomes == ["unknown signing key"] * 50
    assert provider.jwks_requests == 2


async def test_cold_cache_flood_fetches_once(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    tokens = [provider.make_id_token(sub=f"user-{n}", nonce="n") for n in range(50)]

    outcomes = await flood(oidc, tokens)

    assert sorted(outcomes) == sorted(f"user-{n}" for n in range(50))
    assert (provider.discovery_requests, provider.jwks_requests) == (1, 1)


async def test_rotation_with_the_old_key_dropped(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    old_kid = provider.current_kid
    await oidc.verify_id_token(good_token(provider))

    provider.rotate_keys(keep_old=False)
    identity = await oidc.verify_id_token(good_token(provider))

    assert identity.subject == "user-1"
    assert provider.jwks_requests == 2
    with pytest.raises(OidcRejected, match="unknown signing key"):
        await oidc.verify_id_token(good_token(provider, kid=old_kid))
    assert provider.jwks_requests == 2


async def test_rotation_keeping_the_old_key(provider: FakeOidcProvider, oidc: OidcClient) -> None:
    old_kid = provider.current_kid
    await oidc.verify_id_token(good_token(provider))

    provider.rotate_keys()

    assert (await oidc.verify_id_token(good_token(provider))).subject == "user-1"
    assert (await oidc.verify_id_token(good_token(provider, kid=old_kid))).subject == "user-1"
    assert provider.jwks_requests == 2


async def test_max_age_is_honoured(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    provider.jwks_max_age = 300
    await oidc.verify_id_token(good_token(provider))

    clock.advance(299)
    await oidc.verify_id_token(good_token(provider))
    assert provider.jwks_requests == 1

    clock.advance(2)
    await oidc.verify_id_token(good_token(provider))
    assert provider.jwks_requests == 2


async def test_default_max_age_without_cache_control(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    provider.jwks_max_age = None  # the default_jwks_max_age (3600 s) applies
    await oidc.verify_id_token(good_token(provider))

    clock.advance(3599)
    await oidc.verify_id_token(good_token(provider))
    assert provider.jwks_requests == 1

    clock.advance(2)
    await oidc.verify_id_token(good_token(provider))
    assert provider.jwks_requests == 2


async def test_zero_max_age_is_clamped(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    provider.jwks_max_age = 0
    await oidc.verify_id_token(good_token(provider))
    clock.advance(59)
    await oidc.verify_id_token(good_token(provider))

    assert provider.jwks_requests == 1


@pytest.mark.parametrize("mode", ["down", "slow", "malformed"])
async def test_provider_down_with_a_warm_cache(
    provider: FakeOidcProvider, oidc: OidcClient, mode: Mode
) -> None:
    await oidc.verify_id_token(good_token(provider))
    provider.mode = mode

    assert (await oidc.verify_id_token(good_token(provider))).subject == "user-1"
    assert (provider.discovery_requests, provider.jwks_requests) == (1, 1)


async def test_failed_refresh_keeps_the_last_good_set(
    provider: FakeOidcProvider,
    oidc: OidcClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await oidc.verify_id_token(good_token(provider))
    provider.jwks_mode = "down"
    clock.advance(3601)  # the key set is stale now (discovery too)

    assert (await oidc.verify_id_token(good_token(provider))).subject == "user-1"
    assert provider.jwks_requests == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("OpenID fetch failed" in m and "the last good copy" in m for m in warnings)

    # Within the failure back-off, no new attempt; once it has passed, one.
    await oidc.verify_id_token(good_token(provider))
    assert provider.jwks_requests == 2
    clock.advance(5)
    provider.jwks_mode = "ok"
    await oidc.verify_id_token(good_token(provider))
    assert provider.jwks_requests == 3


async def test_cold_cache_and_provider_down(
    provider: FakeOidcProvider, oidc: OidcClient, clock: FakeClock
) -> None:
    provider.mode = "down"

    with pytest.raises(OidcUnavailable, match="discovery unavailable"):
        await oidc.verify_id_token(good_token(provider))

    # A recovered provider is used again once the failure back-off has passed.
    provider.mode = "ok"
    with pytest.raises(OidcUnavailable):
        await oidc.verify_id_token(good_token(provider))
    assert provider.discovery_requests == 1
    clock.advance(5)
    assert (await oidc.verify_id_token(good_token(provider))).subject == "user-1"


# What each broken key set must be reported as. "slow": the provider would answer after
# ``slow_seconds`` (5 s); the shared client's read timeout must end the wait first, and the
# error names it (the 10 s exchange deadline would say "no answer within"). Which bound
# ended the wait is checked, not the clock.
KEY_SET_FAILURES = {
    "down": "answered HTTP 503",
    "slow": "ReadTimeout",
    "malformed": "answered something else than a JSON object",
    "huge": "answer over",
    "redirect": "answered HTTP 302",
}


@pytest.mark.parametrize("mode", list(KEY_SET_FAILURES))
async def test_broken_key_set_with_a_cold_cache(
    provider: FakeOidcProvider, oidc: OidcClient, mode: Mode
) -> None:
    provider.jwks_mode = mode
    assert provider.slow_seconds > HTTP_TIMEOUT

    with pytest.raises(OidcUnavailable, match="signing keys unavailable") as raised:
        await oidc.verify_id_token(good_token(provider))
    assert KEY_SET_FAILURES[mode] in str(raised.value)
    assert provider.jwks_requests == 1


async def test_key_set_without_usable_keys_is_a_failed_fetch(
    provider: FakeOidcProvider, oidc: OidcClient
) -> None:
    provider.discovery_overrides["jwks_uri"] = provider.issuer + "/.well-known/openid-configuration"

    with pytest.raises(OidcUnavailable, match="no key list"):
        await oidc.verify_id_token(good_token(provider))


async def test_discovery_naming_another_issuer(
    provider: FakeOidcProvider, oidc: OidcClient, caplog: pytest.LogCaptureFixture
) -> None:
    provider.discovery_overrides["issuer"] = "https://accounts.google.com"

    with pytest.raises(OidcUnavailable, match="another issuer than the configured one"):
        await oidc.verify_id_token(good_token(provider))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
