"""Revocation when Redis is down (fail open on local knowledge), and the local table's rules."""

from __future__ import annotations

import logging
import uuid

import pytest
import trio

from smartpip.http.revocation import CLEAR_TTL, TokenRevocations
from store.redis import RedisStore
from tests.account.conftest import KEY, bearer, seed_user
from tests.app.conftest import AppFactory
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy


async def test_redis_down_the_api_still_answers_and_the_deleting_replica_refuses(
    app_factory: AppFactory, redis_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Chosen behaviour: fail open. Redis loss must not break the API; the replica that handled
    the deletion refuses the tokens from its own table, every database-backed route refuses
    them because the user row is gone, and only database-free routes on other replicas accept
    them until they expire (at most 15 minutes)."""
    redis_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with (
        app_factory(jwt_keys=KEY, redis_url=redis_url) as first,
        app_factory(jwt_keys=KEY, redis_url=redis_url) as second,
    ):
        alice = await seed_user(first, "alice")
        bob = await seed_user(first, "bob")
        redis_proxy.mode = "down"
        with trio.fail_after(5):
            # Other users keep working on both replicas.
            for app in (first, second):
                for path in ("/v1/me", "/v1/auth/session"):
                    response = await app.client.get(path, headers=bearer(bob.access_token))
                    assert response.status_code == 200, response.text
            deleted = await first.client.delete("/v1/me", headers=bearer(alice.access_token))
            assert deleted.status_code == 204, deleted.text
            gone = bearer(alice.access_token)
            assert (await first.client.get("/v1/auth/session", headers=gone)).status_code == 401
            assert (await first.client.get("/v1/me", headers=gone)).status_code == 401
            assert (await second.client.get("/v1/me", headers=gone)).status_code == 401
            # The documented gap: no database, no Redis, no local knowledge.
            assert (await second.client.get("/v1/auth/session", headers=gone)).status_code == 200
        assert any(
            r.levelno == logging.WARNING and "revocation" in r.getMessage() for r in caplog.records
        )


async def test_redis_back_the_marker_reaches_every_replica(
    app_factory: AppFactory, redis_proxy: FaultProxy
) -> None:
    redis_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with (
        app_factory(jwt_keys=KEY, redis_url=redis_url) as first,
        app_factory(jwt_keys=KEY) as second,
    ):
        alice = await seed_user(first, "alice")
        redis_proxy.mode = "hung"
        # A hang guard: only the store's own timeouts can end the wait on a frozen Redis, and
        # the 200 shows they did (the 30 s request deadline would answer 503).
        with trio.fail_after(5):
            session = await first.client.get("/v1/auth/session", headers=bearer(alice.access_token))
        assert session.status_code == 200
        redis_proxy.mode = "pass"
        deleted = await first.client.delete("/v1/me", headers=bearer(alice.access_token))
        assert deleted.status_code == 204
        response = await second.client.get("/v1/auth/session", headers=bearer(alice.access_token))
        assert response.status_code == 401


# --- the checker on its own -----------------------------------------------------------------


async def test_local_entries_expire_with_the_tokens(down_store: RedisStore) -> None:
    clock = FakeClock()
    revocations = TokenRevocations(down_store, ttl=960, monotonic=clock, backoff=1e9)
    user = uuid.uuid4()
    assert await revocations.revoke_user(user) is False  # Redis down: local only
    assert await revocations.is_revoked(user)
    assert not await revocations.is_revoked(uuid.uuid4())
    clock.advance(959)
    assert await revocations.is_revoked(user)
    clock.advance(1)
    assert not await revocations.is_revoked(user)


async def test_local_table_is_bounded(down_store: RedisStore) -> None:
    revocations = TokenRevocations(down_store, max_local=3, backoff=1e9)
    users = [uuid.uuid4() for _ in range(4)]
    for user in users:
        await revocations.revoke_user(user)
    assert [await revocations.is_revoked(u) for u in users] == [False, True, True, True]


async def test_revoked_in_redis_is_remembered_locally(
    redis_store: RedisStore, clock: FakeClock
) -> None:
    writer = TokenRevocations(redis_store)
    reader = TokenRevocations(redis_store, monotonic=clock)
    user = uuid.uuid4()
    assert not await reader.is_revoked(user)
    assert await writer.revoke_user(user) is True
    # "Not revoked" is trusted for CLEAR_TTL (no Redis round trip per request)...
    assert not await reader.is_revoked(user)
    clock.advance(CLEAR_TTL + 0.01)
    # ...then Redis is asked again and the marker is seen.
    assert await reader.is_revoked(user)
    await redis_store.delete_prefixed()  # even if the marker vanished (Redis restarted)
    assert await reader.is_revoked(user)
