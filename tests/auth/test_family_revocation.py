"""Revoking a sign-in's access tokens: the family checker, and the session service using it."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import trio
import trio.testing

from smartpip.auth.sessions import SessionRejected, Sessions
from smartpip.http import revocation
from smartpip.http.revocation import CLEAR_TTL, REFRESH_AFTER, REFRESH_BATCH, TokenRevocations
from smartpip.http.tokens import AccessTokens
from store.postgres import Database
from store.redis import RedisStore
from store.sessions import select_user_sessions
from tests.support.clock import FakeClock

ISS = "https://accounts.google.com"


class CountingClient:
    """Wraps the coredis client and records the name of every command sent through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.commands: list[str] = []
        self.arguments: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.commands.append(name)
            self.arguments.append(args)
            return attr(*args, **kwargs)

        return counted


@pytest.fixture
def counting(redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> CountingClient:
    """Count the Redis commands of ``redis_store`` from now on."""
    client = CountingClient(redis_store.client)
    monkeypatch.setattr(redis_store, "client", client)
    return client


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


async def test_pairs_in_use_are_reread_together_and_revocations_still_seen_within_clear_ttl(
    redis_store: RedisStore, counting: CountingClient, clock: FakeClock
) -> None:
    writer = TokenRevocations(redis_store)
    reader = TokenRevocations(redis_store, monotonic=clock)
    user, family, other_user, other_family = (uuid.uuid4() for _ in range(4))
    idle_user = uuid.uuid4()
    assert not await reader.is_revoked(user, family)
    assert not await reader.is_revoked(other_user, other_family)
    assert not await reader.is_revoked(idle_user, None)
    assert counting.commands == ["mget"] * 3
    clock.advance(REFRESH_AFTER + 0.01)
    assert not await reader.is_revoked(other_user, other_family)  # in use: a cached answer
    await writer.revoke_family(other_family)  # another replica logs that sign-in out
    counting.commands.clear()
    clock.advance(CLEAR_TTL - REFRESH_AFTER)  # the first answers have expired
    # One MGET reads the asked pair and the other one in use (not the idle user's)...
    assert not await reader.is_revoked(user, family)
    assert counting.commands == ["mget"]
    # ...so the logout is seen without a command of its own, within CLEAR_TTL of it.
    assert await reader.is_revoked(other_user, other_family)
    assert counting.commands == ["mget"]
    assert not await reader.is_revoked(idle_user, None)  # not re-read: its own command
    assert counting.commands == ["mget", "mget"]
    # A revocation after a shared read is seen once that read is CLEAR_TTL old, as before.
    await writer.revoke_user(user)
    assert not await reader.is_revoked(user, family)
    clock.advance(CLEAR_TTL + 0.01)
    assert await reader.is_revoked(user, family)


async def test_concurrent_checks_of_one_pair_share_its_read(
    redis_store: RedisStore, counting: CountingClient, clock: FakeClock
) -> None:
    reader = TokenRevocations(redis_store, monotonic=clock)
    writer = TokenRevocations(redis_store)
    user, family = uuid.uuid4(), uuid.uuid4()
    await writer.revoke_family(family)
    answers: list[bool] = []

    async def check() -> None:
        answers.append(await reader.is_revoked(user, family))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(check)
    assert answers == [True] * 5
    assert counting.commands == ["set", "mget"]  # the marker; one read, four waited for it


async def test_a_check_waiting_for_a_cancelled_read_reads_itself(
    redis_store: RedisStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []

    async def select(store: RedisStore, pairs: list[Any]) -> list[tuple[bool, bool]]:
        reads.append(len(pairs))
        if len(reads) == 1:
            await trio.sleep_forever()  # the first read never answers: it is cancelled
        return [(True, False)] * len(pairs)

    monkeypatch.setattr(revocation, "select_many_revocations", select)
    reader = TokenRevocations(redis_store, monotonic=clock)
    user, family = uuid.uuid4(), uuid.uuid4()
    answers: list[bool] = []

    async def check(scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            answers.append(await reader.is_revoked(user, family))

    first = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check, first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(check)  # waits for the first one's read
        await trio.testing.wait_all_tasks_blocked()
        assert reads == [1]
        first.cancel()
    # Not "clear" for want of an answer: the waiting check read the markers itself.
    assert answers == [True]
    assert reads == [1, 1]


async def test_a_shared_reread_is_bounded(
    redis_store: RedisStore, counting: CountingClient, clock: FakeClock
) -> None:
    reader = TokenRevocations(redis_store, monotonic=clock)
    pairs = [(uuid.uuid4(), uuid.uuid4()) for _ in range(REFRESH_BATCH + 5)]
    for user, family in pairs:
        assert not await reader.is_revoked(user, family)
    clock.advance(REFRESH_AFTER + 0.01)
    for user, family in pairs:  # all in use
        assert not await reader.is_revoked(user, family)
    counting.commands.clear()
    counting.arguments.clear()
    clock.advance(CLEAR_TTL)
    assert not await reader.is_revoked(*pairs[-1])
    assert counting.commands == ["mget"]
    (keys,) = counting.arguments[0]
    assert len(keys) == 2 * (REFRESH_BATCH + 1)  # the asked pair and REFRESH_BATCH others
    for user, family in pairs[:REFRESH_BATCH]:  # the oldest ones were re-read with it
        assert not await reader.is_revoked(user, family)
    assert counting.commands == ["mget"]


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


# --- the session service --------------------------------------------------------------------


async def family_of(db: Database, user_id: uuid.UUID) -> set[uuid.UUID]:
    return {row.family_id for row in await db.run(select_user_sessions, user_id)}


async def test_access_tokens_name_their_family(
    sessions: Sessions, db: Database, tokens: AccessTokens
) -> None:
    first = await sessions.sign_in(ISS, "sub", method="code")
    (family,) = await family_of(db, first.user_id)
    rotated = await sessions.refresh(first.refresh_token)
    started = await sessions.start(first.user_id)
    assert tokens.verify(first.access_token).session_id == family
    assert tokens.verify(rotated.access_token).session_id == family
    other = tokens.verify(started.access_token).session_id
    assert other is not None and other != family
    assert await family_of(db, first.user_id) == {family, other}


async def test_logout_revokes_the_familys_access_tokens(
    sessions: Sessions, tokens: AccessTokens, revocations: TokenRevocations, redis_store: RedisStore
) -> None:
    signed_in = await sessions.sign_in(ISS, "sub", method="code")
    other = await sessions.sign_in(ISS, "sub", method="code")
    claims = tokens.verify(signed_in.access_token)
    kept = tokens.verify(other.access_token)
    assert not await revocations.is_revoked(claims.user_id, claims.session_id)
    await sessions.logout(signed_in.refresh_token)
    assert await revocations.is_revoked(claims.user_id, claims.session_id)
    assert not await revocations.is_revoked(kept.user_id, kept.session_id)
    another_replica = TokenRevocations(redis_store)
    assert await another_replica.is_revoked(claims.user_id, claims.session_id)
    assert not await another_replica.is_revoked(kept.user_id, kept.session_id)


async def test_logout_again_writes_the_marker_again(
    sessions: Sessions, tokens: AccessTokens, redis_store: RedisStore
) -> None:
    # A retry after Redis was down completes the revocation (the family is already revoked).
    signed_in = await sessions.sign_in(ISS, "sub", method="code")
    claims = tokens.verify(signed_in.access_token)
    await sessions.logout(signed_in.refresh_token)
    await redis_store.delete_prefixed()  # as if the marker had never been written
    await sessions.logout(signed_in.refresh_token)
    another_replica = TokenRevocations(redis_store)
    assert await another_replica.is_revoked(claims.user_id, claims.session_id)


async def test_reuse_detection_revokes_the_familys_access_tokens(
    sessions: Sessions, tokens: AccessTokens, redis_store: RedisStore, clock: FakeClock
) -> None:
    first = await sessions.sign_in(ISS, "sub", method="code")
    second = await sessions.refresh(first.refresh_token)
    other = await sessions.sign_in(ISS, "sub", method="id_token")
    clock.advance(11)  # past the 10 s grace
    with pytest.raises(SessionRejected, match="reused"):
        await sessions.refresh(first.refresh_token)
    another_replica = TokenRevocations(redis_store)
    for issued in (first, second):
        claims = tokens.verify(issued.access_token)
        assert await another_replica.is_revoked(claims.user_id, claims.session_id)
    kept = tokens.verify(other.access_token)
    assert not await another_replica.is_revoked(kept.user_id, kept.session_id)
