"""Revoking a sign-in's access tokens: the checker of users and families."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from smartpip.revocation import CLEAR_TTL, TokenRevocations
from store.redis import RedisSettings, RedisStore, open_redis
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy


class CountingClient:
    """Wraps the coredis client and records the name of every command sent through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.commands: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.commands.append(name)
            return attr(*args, **kwargs)

        return counted


@pytest.fixture
def counting(redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> CountingClient:
    """Count the Redis commands of ``redis_store`` from now on."""
    client = CountingClient(redis_store.client)
    monkeypatch.setattr(redis_store, "client", client)
    return client


@pytest.fixture
async def down_store(redis_proxy: FaultProxy) -> AsyncIterator[RedisStore]:
    redis_proxy.mode = "down"
    settings = RedisSettings(url=f"redis://127.0.0.1:{redis_proxy.port}/0", prefix="unused:")
    async with open_redis(settings) as store:
        yield store


# --- the checker ----------------------------------------------------------------------------


async def test_one_command_per_check_and_none_while_clear(
    redis_store: RedisStore, counting: CountingClient, clock: FakeClock
) -> None:
    reader = TokenRevocations(redis_store, monotonic=clock)
    user, family = uuid.uuid4(), uuid.uuid4()
    assert not await reader.is_revoked(user, family)
    assert counting.commands == ["mget"]  # the user's and the family's marker, one command
    for _ in range(5):  # a burst of the same sign-in's requests: no Redis at all
        assert not await reader.is_revoked(user, family)
    assert counting.commands == ["mget"]
    clock.advance(CLEAR_TTL + 0.01)
    assert not await reader.is_revoked(user, family)
    assert counting.commands == ["mget", "mget"]


async def test_a_revoked_family_is_seen_by_other_replicas_and_only_that_family(
    redis_store: RedisStore, clock: FakeClock
) -> None:
    writer = TokenRevocations(redis_store)
    reader = TokenRevocations(redis_store, monotonic=clock)
    user, family, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert not await reader.is_revoked(user, family)
    assert await writer.revoke_family(family) is True
    assert await writer.is_revoked(user, family)  # the writer: at once
    assert not await reader.is_revoked(user, family)  # the reader: its "clear" answer holds...
    clock.advance(CLEAR_TTL + 0.01)
    assert await reader.is_revoked(user, family)  # ...until CLEAR_TTL, then Redis says so
    # Another sign-in of the user, and tokens without a family, are not affected.
    for checker in (writer, reader):
        assert not await checker.is_revoked(user, other)
        assert not await checker.is_revoked(user, None)
    await redis_store.delete_prefixed()  # remembered locally once seen (Redis restarted)
    assert await reader.is_revoked(user, family)


async def test_a_revoked_user_covers_every_family(redis_store: RedisStore) -> None:
    writer, reader = TokenRevocations(redis_store), TokenRevocations(redis_store)
    user = uuid.uuid4()
    assert await writer.revoke_user(user) is True
    for family in (uuid.uuid4(), uuid.uuid4(), None):
        assert await writer.is_revoked(user, family)
        assert await reader.is_revoked(user, family)
    assert not await reader.is_revoked(uuid.uuid4(), None)


async def test_redis_down_the_revoking_replica_still_refuses(
    down_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    revocations = TokenRevocations(down_store, ttl=960, monotonic=clock, backoff=1e9)
    user, family = uuid.uuid4(), uuid.uuid4()
    assert await revocations.revoke_family(family) is False  # local only
    assert await revocations.is_revoked(user, family)
    assert not await revocations.is_revoked(user, uuid.uuid4())  # fail open for the rest
    assert not await revocations.is_revoked(user, None)
    clock.advance(959)
    assert await revocations.is_revoked(user, family)
    clock.advance(1)  # the tokens have expired: so has the local entry
    assert not await revocations.is_revoked(user, family)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in warnings if "only this replica" in m]) == 1  # the outage, once


async def test_local_family_table_is_bounded(down_store: RedisStore) -> None:
    revocations = TokenRevocations(down_store, max_local=3, backoff=1e9)
    user, families = uuid.uuid4(), [uuid.uuid4() for _ in range(4)]
    for family in families:
        await revocations.revoke_family(family)
    answers = [await revocations.is_revoked(user, f) for f in families]
    assert answers == [False, True, True, True]
