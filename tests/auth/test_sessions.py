"""The refresh-session service on the real Postgres: sign-in, rotation, reuse, expiry, logout."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import trio

from smartpip.auth.sessions import IssuedTokens, SessionPolicy, SessionRejected, Sessions
from smartpip.http.revocation import TokenRevocations
from smartpip.http.tokens import ACCESS_TOKEN_TTL, AccessTokens
from store.audit import AuditRow, select_audit_for_user
from store.postgres import Database, DatabaseUnavailable, PostgresSettings, open_database
from store.sessions import SessionRow, select_user_sessions
from store.users import select_user
from tests.support.clock import FakeClock

ISS = "https://accounts.google.com"
DAY = 86_400


async def sign_in(sessions: Sessions, sub: str = "google-sub-1") -> IssuedTokens:
    return await sessions.sign_in(ISS, sub, method="code")


async def rejected(sessions: Sessions, refresh_token: str) -> str:
    with pytest.raises(SessionRejected) as raised:
        await sessions.refresh(refresh_token)
    assert str(raised.value) == raised.value.reason
    return raised.value.reason


async def audit(db: Database, user_id: uuid.UUID) -> list[AuditRow]:
    return await db.run(select_audit_for_user, user_id)


async def rows(db: Database, user_id: uuid.UUID) -> list[SessionRow]:
    return await db.run(select_user_sessions, user_id)


def session_of(all_rows: list[SessionRow], refresh_token: str) -> SessionRow:
    digest = hashlib.sha256(refresh_token.encode()).digest()
    (row,) = [r for r in all_rows if r.token_hash == digest]
    return row


async def test_sign_in_creates_user_session_and_audit(
    sessions: Sessions, db: Database, tokens: AccessTokens, clock: FakeClock
) -> None:
    issued = await sign_in(sessions)
    assert tokens.verify(issued.access_token).user_id == issued.user_id
    assert issued.expires_in == ACCESS_TOKEN_TTL
    assert issued.refresh_expires_in == 30 * DAY
    assert len(issued.refresh_token) == 43  # 32 random bytes, URL-safe base64
    assert issued.refresh_token not in repr(issued) and issued.access_token not in repr(issued)

    user = await db.run(select_user, issued.user_id)
    assert user is not None and user.id == issued.user_id

    (row,) = await rows(db, issued.user_id)
    assert row.token_hash == hashlib.sha256(issued.refresh_token.encode()).digest()
    assert row.parent_id is None and row.used_at is None and row.revoked_at is None
    assert row.expires_at.timestamp() == clock.now + 30 * DAY
    assert row.absolute_expires_at.timestamp() == clock.now + 90 * DAY
    assert "token_hash" not in repr(row)

    (event,) = await audit(db, issued.user_id)
    assert event.event == "sign_in"
    assert event.meta == {"method": "code", "new_user": True, "family": str(row.family_id)}


async def test_second_sign_in_same_identity_same_user_new_family(
    sessions: Sessions, db: Database
) -> None:
    first = await sign_in(sessions)
    second = await sign_in(sessions)
    other = await sign_in(sessions, sub="google-sub-2")
    assert second.user_id == first.user_id != other.user_id
    assert second.refresh_token != first.refresh_token
    families = {r.family_id for r in await rows(db, first.user_id)}
    assert len(families) == 2
    assert [e.meta["new_user"] for e in await audit(db, first.user_id)] == [True, False]


async def test_refresh_rotates(
    sessions: Sessions, db: Database, tokens: AccessTokens, clock: FakeClock
) -> None:
    first = await sign_in(sessions)
    clock.advance(600)
    second = await sessions.refresh(first.refresh_token)
    assert second.user_id == first.user_id
    assert second.refresh_token != first.refresh_token
    assert tokens.verify(second.access_token).issued_at == int(clock.now)
    assert second.refresh_expires_in == 30 * DAY

    all_rows = await rows(db, first.user_id)
    old, new = session_of(all_rows, first.refresh_token), session_of(all_rows, second.refresh_token)
    assert old.used_at is not None and old.used_at.timestamp() == clock.now
    assert old.last_used_at == old.used_at
    assert new.parent_id == old.id and new.family_id == old.family_id
    assert new.used_at is None and new.revoked_at is None
    assert new.expires_at.timestamp() == clock.now + 30 * DAY  # idle expiry slides
    assert new.absolute_expires_at == old.absolute_expires_at  # the family's does not

    clock.advance(600)
    third = await sessions.refresh(second.refresh_token)
    assert third.user_id == first.user_id


async def test_reuse_after_grace_revokes_the_family(
    sessions: Sessions, db: Database, clock: FakeClock
) -> None:
    first = await sign_in(sessions)
    second = await sessions.refresh(first.refresh_token)
    clock.advance(11)  # past the 10 s grace
    assert await rejected(sessions, first.refresh_token) == "reused"
    # The revocation committed although the call failed: the successor is dead too.
    assert await rejected(sessions, second.refresh_token) == "revoked"
    assert await rejected(sessions, first.refresh_token) == "revoked"

    all_rows = await rows(db, first.user_id)
    assert all(r.revoked_at is not None for r in all_rows)
    events = await audit(db, first.user_id)
    assert [e.event for e in events] == ["sign_in", "refresh_reuse_detected"]
    assert events[1].meta == {"family": str(all_rows[0].family_id)}
    # Other families of the user are untouched.
    other = await sign_in(sessions)
    assert (await sessions.refresh(other.refresh_token)).user_id == first.user_id


async def test_reuse_within_grace_gives_a_working_sibling(
    sessions: Sessions, db: Database, clock: FakeClock
) -> None:
    first = await sign_in(sessions)
    clock.advance(5)
    second = await sessions.refresh(first.refresh_token)
    clock.advance(10)  # exactly at the end of the grace window: still inside
    sibling = await sessions.refresh(first.refresh_token)
    all_rows = await rows(db, first.user_id)
    old = session_of(all_rows, first.refresh_token)
    a, b = session_of(all_rows, second.refresh_token), session_of(all_rows, sibling.refresh_token)
    assert a.parent_id == b.parent_id == old.id
    assert old.used_at is not None and old.last_used_at is not None
    assert old.last_used_at - old.used_at == timedelta(seconds=10)  # grace counts from first use
    clock.advance(1)
    await sessions.refresh(second.refresh_token)
    await sessions.refresh(sibling.refresh_token)
    assert await rejected(sessions, first.refresh_token) == "reused"


async def test_concurrent_refreshes_of_one_token_both_succeed(
    sessions: Sessions, db: Database, clock: FakeClock
) -> None:
    first = await sign_in(sessions)
    results: list[IssuedTokens] = []

    async def refresh() -> None:
        results.append(await sessions.refresh(first.refresh_token))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresh)
        nursery.start_soon(refresh)
    assert len(results) == 2
    assert results[0].refresh_token != results[1].refresh_token
    clock.advance(60)
    for issued in results:
        assert (await sessions.refresh(issued.refresh_token)).user_id == first.user_id
    assert [e.event for e in await audit(db, first.user_id)] == ["sign_in"]
    assert len(await rows(db, first.user_id)) == 5


async def test_idle_expiry(sessions: Sessions, clock: FakeClock) -> None:
    first = await sign_in(sessions)
    clock.advance(30 * DAY - 1)
    second = await sessions.refresh(first.refresh_token)
    clock.advance(30 * DAY)
    assert await rejected(sessions, second.refresh_token) == "expired"


async def test_absolute_expiry_caps_the_sliding_window(
    db: Database, tokens: AccessTokens, revocations: TokenRevocations, clock: FakeClock
) -> None:
    policy = SessionPolicy(idle=timedelta(hours=1), absolute=timedelta(hours=3))
    sessions = Sessions(db, tokens, policy, revocations, clock=clock)
    issued = await sign_in(sessions)
    for _ in range(2):  # active every 50 minutes: each rotation slides the idle expiry
        clock.advance(50 * 60)
        issued = await sessions.refresh(issued.refresh_token)
        assert issued.refresh_expires_in == 3600
    clock.advance(50 * 60)  # 150 minutes after sign-in: capped by the absolute expiry
    issued = await sessions.refresh(issued.refresh_token)
    assert issued.refresh_expires_in == 30 * 60
    clock.advance(29 * 60)  # 179 minutes
    issued = await sessions.refresh(issued.refresh_token)
    assert issued.refresh_expires_in == 60
    clock.advance(60)
    assert await rejected(sessions, issued.refresh_token) == "expired"
    assert (await sign_in(sessions)).refresh_expires_in == 3600  # a new sign-in starts afresh


async def test_logout_revokes_the_family(
    sessions: Sessions, db: Database, clock: FakeClock
) -> None:
    first = await sign_in(sessions)
    other = await sign_in(sessions)
    second = await sessions.refresh(first.refresh_token)
    await sessions.logout(first.refresh_token)  # a rotated token of the family will do
    assert await rejected(sessions, second.refresh_token) == "revoked"
    await sessions.logout(second.refresh_token)  # again: nothing to do, no error
    await sessions.logout(secrets.token_urlsafe(32))  # unknown: no error
    await sessions.logout("")
    assert (await sessions.refresh(other.refresh_token)).user_id == first.user_id
    events = await audit(db, first.user_id)
    assert [e.event for e in events] == ["sign_in", "sign_in", "logout"]
    family = session_of(await rows(db, first.user_id), first.refresh_token).family_id
    assert events[2].meta == {"family": str(family)}


async def test_unknown_and_malformed_refresh_tokens(sessions: Sessions) -> None:
    issued = await sign_in(sessions)
    for token in (
        secrets.token_urlsafe(32),
        "",
        "x" * 10_000,
        "\udcff",
        "é",
        issued.access_token,
    ):
        assert await rejected(sessions, token) == "unknown"


async def test_start_for_an_existing_user(sessions: Sessions, db: Database) -> None:
    issued = await sign_in(sessions)
    started = await sessions.start(issued.user_id)
    assert started.user_id == issued.user_id
    assert len({r.family_id for r in await rows(db, issued.user_id)}) == 2
    assert (await sessions.refresh(started.refresh_token)).user_id == issued.user_id
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await sessions.start(uuid.uuid4())


def dump(url: str) -> str:
    """Every row of every table the service writes, as text (bytea in hex, jsonb as JSON)."""
    with psycopg.connect(url) as conn:
        parts: list[Any] = []
        for table in ("users", "sessions", "audit_logs"):
            parts += [row[0] for row in conn.execute(f"SELECT t::text FROM {table} t")]
    return "\n".join(parts)


async def test_database_never_holds_a_raw_token(
    sessions: Sessions, pg_url: str, clock: FakeClock
) -> None:
    issued = [await sign_in(sessions)]
    issued.append(await sessions.refresh(issued[0].refresh_token))
    clock.advance(60)
    with pytest.raises(SessionRejected):
        await sessions.refresh(issued[0].refresh_token)  # reuse: audit row written
    other = await sign_in(sessions)
    await sessions.logout(other.refresh_token)
    issued.append(other)

    text = dump(pg_url)
    assert "\\x" + hashlib.sha256(other.refresh_token.encode()).hexdigest() in text  # sanity
    for item in issued:
        for token in (item.refresh_token, item.access_token):
            assert token not in text
            assert token.encode().hex() not in text
        for part in item.access_token.split("."):
            assert part not in text


async def test_database_unavailable_propagates(
    tokens: AccessTokens, revocations: TokenRevocations
) -> None:
    settings = PostgresSettings(
        url="postgresql://nobody@127.0.0.1:9/none", acquire_timeout=0.2, query_timeout=1.0
    )
    async with open_database(settings) as db:
        sessions = Sessions(db, tokens, SessionPolicy(), revocations)
        with pytest.raises(DatabaseUnavailable):
            await sessions.refresh(secrets.token_urlsafe(32))
        with pytest.raises(DatabaseUnavailable):
            await sessions.sign_in(ISS, "sub", method="code")
