"""The query functions behind sign-in: users, audit log, sessions, and the session lock."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import trio

from store.audit import AUDIT_META_KEYS, MetaValue, insert_audit, select_audit_for_user
from store.postgres import Database
from store.sessions import (
    insert_session,
    lock_user_sessions,
    mark_session_used,
    revoke_family,
    select_session_for_update,
    select_user_sessions,
)
from store.users import select_user, upsert_user
from tests.support.pg import wait_until_blocked

ISS = "https://accounts.google.com"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def new_session(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    parent_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, bytes]:
    token_hash = uuid.uuid4().bytes * 2
    session_id = insert_session(
        conn,
        user_id=user_id,
        family_id=family_id,
        parent_id=parent_id,
        token_hash=token_hash,
        expires_at=NOW + timedelta(days=30),
        absolute_expires_at=NOW + timedelta(days=90),
    )
    return session_id, token_hash


async def test_upsert_user_creates_once(db: Database) -> None:
    user_id, created = await db.run(upsert_user, ISS, "sub-1")
    assert created
    assert await db.run(upsert_user, ISS, "sub-1") == (user_id, False)
    other, created = await db.run(upsert_user, "https://other.example", "sub-1")
    assert created and other != user_id
    user = await db.run(select_user, user_id)
    assert user is not None and user.id == user_id and user.created_at.tzinfo is not None
    assert await db.run(select_user, uuid.uuid4()) is None


async def test_upsert_user_racing_sign_ins_get_one_user(db: Database) -> None:
    results: list[tuple[uuid.UUID, bool]] = []

    async def upsert() -> None:
        results.append(await db.run(upsert_user, ISS, "racer"))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(upsert)
    assert len({user_id for user_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]


async def test_upsert_user_rejects_oversized_sub(db: Database) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(upsert_user, ISS, "s" * 256)


async def test_audit_round_trip(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "audited")
    meta: dict[str, MetaValue] = {
        "method": "code",
        "new_user": True,
        "family": "f",
        "count": 3,
        "reason": None,
    }
    await db.run(insert_audit, user_id, "sign_in", meta)
    await db.run(insert_audit, user_id, "logout", {})
    await db.run(insert_audit, None, "anonymous_event", {"reason": "x"})
    events = await db.run(select_audit_for_user, user_id)
    assert [(e.event, e.meta, e.user_id) for e in events] == [
        ("sign_in", meta, user_id),
        ("logout", {}, user_id),
    ]
    assert events[0].id < events[1].id


@pytest.mark.parametrize(
    ("event", "meta", "message"),
    [
        ("sign_in", {"email": "a@example.com"}, "keys not allowed: email"),
        ("sign_in", {"refresh_token": "x", "ip": "1.2.3.4"}, "keys not allowed: ip, refresh_token"),
        ("sign_in", {"method": ["code"]}, "must be a str, int, bool or None"),
        ("sign_in", {"count": 1.5}, "must be a str, int, bool or None"),
        ("sign_in", {"reason": "r" * 101}, "longer than 100"),
        ("Sign In", {}, "not a lower-case identifier"),
        ("", {}, "not a lower-case identifier"),
    ],
)
async def test_audit_meta_allow_list(
    db: Database, event: str, meta: dict[str, Any], message: str
) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "audited")
    with pytest.raises(ValueError, match=message):
        await db.run(insert_audit, user_id, event, meta)
    assert await db.run(select_audit_for_user, user_id) == []


def test_meta_keys_hold_no_personal_data() -> None:
    # Widening the list is a reviewed change: no key for tokens, e-mail or IPs. ``scopes``
    # (issue 16): the OAuth scope names a user granted, for the YouTube consent.
    assert sorted(AUDIT_META_KEYS) == ["count", "family", "method", "new_user", "reason", "scopes"]


async def test_session_rows(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sessions")
    family = uuid.uuid4()
    parent, parent_hash = await db.run(new_session, user_id, family)
    child, _ = await db.run(new_session, user_id, family, parent)

    await db.run(mark_session_used, parent, NOW)
    await db.run(mark_session_used, parent, NOW + timedelta(seconds=5))
    row = await db.run(select_session_for_update, parent_hash)
    assert row is not None and row.id == parent and row.family_id == family
    assert row.used_at == NOW and row.last_used_at == NOW + timedelta(seconds=5)
    assert await db.run(select_session_for_update, b"\0" * 32) is None

    assert await db.run(revoke_family, family, NOW) == 2
    assert await db.run(revoke_family, family, NOW + timedelta(days=1)) == 0
    listed = await db.run(select_user_sessions, user_id)
    assert {r.id for r in listed} == {parent, child}
    assert all(r.revoked_at == NOW for r in listed)


async def test_insert_session_checks_the_hash_length(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sessions")

    def insert_short(conn: psycopg.Connection[Any]) -> uuid.UUID:
        return insert_session(
            conn,
            user_id=user_id,
            family_id=uuid.uuid4(),
            parent_id=None,
            token_hash=b"raw-token",
            expires_at=NOW,
            absolute_expires_at=NOW,
        )

    with pytest.raises(ValueError, match="32 bytes"):
        await db.run(insert_short)


def test_revocation_waits_for_a_rotation_in_flight_and_covers_its_child(pg_url: str) -> None:
    """The race the session lock exists for: a child inserted while a revocation waits."""
    with psycopg.connect(pg_url) as setup:
        user_id, _ = upsert_user(setup, ISS, "racer")
        family = uuid.uuid4()
        parent, parent_hash = new_session(setup, user_id, family)
        setup.commit()

    with (
        psycopg.connect(pg_url) as rotating,
        psycopg.connect(pg_url) as revoking,
        psycopg.connect(pg_url, autocommit=True) as observer,
    ):
        # Rotation in flight: lock, parent row locked, child inserted, not yet committed.
        lock_user_sessions(rotating, user_id)
        assert select_session_for_update(rotating, parent_hash) is not None
        mark_session_used(rotating, parent, NOW)
        child, _ = new_session(rotating, user_id, family, parent)

        revoked: list[int] = []

        def revoke() -> None:
            lock_user_sessions(revoking, user_id)
            revoked.append(revoke_family(revoking, family, NOW))
            revoking.commit()

        thread = threading.Thread(target=revoke)
        thread.start()
        try:
            wait_until_blocked(observer, revoking.info.backend_pid)
        finally:
            rotating.commit()
            thread.join(timeout=10)
        assert revoked == [2]  # the parent and the child committed meanwhile

    with psycopg.connect(pg_url) as check:
        rows = select_user_sessions(check, user_id)
        assert {r.id for r in rows} == {parent, child}
        assert all(r.revoked_at is not None for r in rows)
