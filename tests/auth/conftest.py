"""Fixtures for the auth tests: signing keys, a controllable clock, a database, the services."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from smartpip.config import JwtKey
from smartpip.sessions import SessionPolicy, Sessions
from smartpip.tokens import AccessTokens
from store.postgres import Database, PostgresSettings, open_database

KEY = JwtKey("k1", b"k" * 32)
OLD_KEY = JwtKey("k0", b"o" * 32)


class FakeClock:
    """Wall-clock seconds that move only when told (real I/O rules out trio's MockClock)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A clock starting at the current time, moved by the test."""
    return FakeClock()


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
def sessions(
    db: Database, tokens: AccessTokens, policy: SessionPolicy, clock: FakeClock
) -> Sessions:
    """The session service on the test database and the fake clock."""
    return Sessions(db, tokens, policy, clock=clock)
