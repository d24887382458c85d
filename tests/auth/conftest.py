"""Fixtures for the auth tests: signing keys, a controllable clock, a database, Redis, the
services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smartpip.auth.sessions import SessionPolicy, Sessions
from smartpip.http.revocation import TokenRevocations
from smartpip.http.tokens import AccessTokens, JwtKey
from store.postgres import Database, PostgresSettings, open_database
from store.redis import RedisStore
from tests.support.clock import FakeClock

KEY = JwtKey("k1", b"k" * 32)
OLD_KEY = JwtKey("k0", b"o" * 32)


@pytest.fixture
def tokens(clock: FakeClock) -> AccessTokens:
    """Access tokens signed with ``KEY``, also accepting ``OLD_KEY``."""
    return AccessTokens([KEY, OLD_KEY], clock=clock)


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    """The migrated, emptied test database."""
    async with open_database(PostgresSettings(url=pg_url, max_size=4)) as database:
        yield database


@pytest.fixture
def policy() -> SessionPolicy:
    """The default lifetimes."""
    return SessionPolicy()


@pytest.fixture
def revocations(redis_store: RedisStore, clock: FakeClock) -> TokenRevocations:
    """The access-token revocations on the test's Redis prefix (markers stamped by ``clock``;
    local expiry on the real monotonic clock)."""
    return TokenRevocations(redis_store, clock=clock)


@pytest.fixture
def sessions(
    db: Database,
    tokens: AccessTokens,
    policy: SessionPolicy,
    revocations: TokenRevocations,
    clock: FakeClock,
) -> Sessions:
    """The session service on the test database and the fake clock."""
    return Sessions(db, tokens, policy, revocations, clock=clock)
