"""Fixtures: the fake OpenID provider on loopback, a fake clock, and the client under test.

Real HTTP rules out trio's MockClock, so time-based behaviour (cache lifetimes, the refetch
cool-down, token expiry, code expiry) runs on :class:`FakeClock`, shared by the client (wall
and monotonic) and the provider (minted ``iat``/``exp``, code expiry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from smartpip.auth.oidc import OidcClient, OidcSettings
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.support.clock import FakeClock

__all__ = ["HTTP_TIMEOUT", "REDIRECT_URI"]

REDIRECT_URI = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/"
# Why 0.5 s: long enough for loopback on a loaded CI machine, short enough that the "slow"
# tests stay fast.
HTTP_TIMEOUT = 0.5


@pytest.fixture
async def provider(nursery: trio.Nursery, clock: FakeClock) -> FakeOidcProvider:
    """A fake provider serving on loopback until the test ends."""
    provider = FakeOidcProvider(clock=clock)
    await nursery.start(provider.run)
    return provider


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client configured like the service's shared one, with short timeouts."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        yield client


@pytest.fixture
def settings(provider: FakeOidcProvider) -> OidcSettings:
    """Client settings pointing at the fake provider."""
    return OidcSettings(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
    )


@pytest.fixture
def oidc(settings: OidcSettings, http: httpx.AsyncClient, clock: FakeClock) -> OidcClient:
    """The client under test, on the fake clock."""
    return OidcClient(settings, http, clock=clock, monotonic=clock)
