"""The cleanup's deletions on real Postgres: exactly what is past retention, in bounded batches."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import psycopg
import trio
from psycopg.types.json import Jsonb

from store.cleanup import (
    delete_audit_past,
    delete_history_past_retention,
    delete_job_runs_past,
    delete_sessions_past,
)
from store.postgres import Database
from tasks.cleanup import CleanupPolicy, PostgresCleanup, run_cleanup

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
EPS = dt.timedelta(seconds=1)
FAR = NOW + 60 * DAY
SESSION_CUTOFF = NOW - 30 * DAY
AUDIT_CUTOFF = NOW - 90 * DAY


def add_user(conn: psycopg.Connection[Any], sub: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO users (oidc_iss, oidc_sub) VALUES ('https://t.example', %s) RETURNING id",
        (sub,),
    ).fetchone()
    assert row is not None
    user_id: uuid.UUID = row[0]
    return user_id


def add_family(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    expires: list[dt.datetime],
    *,
    absolute: dt.datetime = FAR,
    revoked: dt.datetime | None = None,
) -> uuid.UUID:
    """A family with one row per idle expiry in ``expires`` (each rotated from the one before)."""
    family, parent = uuid.uuid4(), None
    for expires_at in expires:
        row = conn.execute(
            "INSERT INTO sessions (user_id, family_id, parent_id, token_hash, expires_at,"
            " absolute_expires_at, revoked_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (user_id, family, parent, os.urandom(32), expires_at, absolute, revoked),
        ).fetchone()
        assert row is not None
        parent = row[0]
    return family


def families(conn: psycopg.Connection[Any]) -> dict[uuid.UUID, int]:
    rows = conn.execute("SELECT family_id, count(*) FROM sessions GROUP BY family_id").fetchall()
    return {row[0]: row[1] for row in rows}


async def test_sessions_go_exactly_when_revoked_or_expired_before_the_cutoff(
    db: Database, pg_url: str
) -> None:
    with psycopg.connect(pg_url) as conn:
        alice, bob = add_user(conn, "alice"), add_user(conn, "bob")
        live = [NOW + 10 * DAY]
        gone = {
            "revoked before": add_family(conn, alice, live * 2, revoked=SESSION_CUTOFF - EPS),
            "absolute before": add_family(
                conn, alice, [SESSION_CUTOFF - EPS], absolute=SESSION_CUTOFF - EPS
            ),
            # Never written so (expires_at <= absolute_expires_at); the rule holds anyway.
            "absolute only": add_family(conn, alice, live, absolute=SESSION_CUTOFF - EPS),
            "idle before": add_family(
                conn, alice, [SESSION_CUTOFF - 5 * DAY, SESSION_CUTOFF - EPS, SESSION_CUTOFF - EPS]
            ),
            "bob's revoked": add_family(conn, bob, live, revoked=NOW - 200 * DAY),
        }
        kept = {
            "revoked after": add_family(conn, alice, live * 2, revoked=SESSION_CUTOFF + EPS),
            "absolute after": add_family(
                conn, alice, [SESSION_CUTOFF + EPS], absolute=SESSION_CUTOFF + EPS
            ),
            "idle after": add_family(conn, alice, [SESSION_CUTOFF + EPS, SESSION_CUTOFF + EPS]),
            "idle at the cutoff": add_family(conn, alice, [SESSION_CUTOFF]),
            "bob's live": add_family(conn, bob, live),
        }
        # Rotated for months, still in use: only its tokens expired before the cutoff go
        # (presenting one answers "expired" before any reuse check).
        rotated = add_family(
            conn, alice, [NOW - 100 * DAY, SESSION_CUTOFF - EPS, SESSION_CUTOFF + EPS, *live]
        )
        rotated_kept = session_rows(conn, rotated, since=SESSION_CUTOFF)
        before = families(conn)

    deleted = await db.run(delete_sessions_past, SESSION_CUTOFF, 1000)

    with psycopg.connect(pg_url) as conn:
        after = families(conn)
        rotated_left = session_rows(conn, rotated)
    assert set(after) == {*kept.values(), rotated}, {
        name for name, family in {**gone, **kept}.items() if (family in after) != (name in kept)
    }
    assert all(after[family] == before[family] for family in kept.values())
    assert len(rotated_kept) == 2 and rotated_left == rotated_kept
    assert deleted == sum(before[family] for family in gone.values()) + 2 == 10
    assert await db.run(delete_sessions_past, SESSION_CUTOFF, 1000) == 0


def session_rows(
    conn: psycopg.Connection[Any], family: uuid.UUID, since: dt.datetime | None = None
) -> list[tuple[Any, ...]]:
    """The family's ``(id, expires_at)`` rows expiring at or after ``since``, oldest first."""
    return conn.execute(
        "SELECT id, expires_at FROM sessions WHERE family_id = %s"
        " AND expires_at >= coalesce(%s::timestamptz, '-infinity') ORDER BY expires_at",
        (family, since),
    ).fetchall()


async def test_a_dead_family_may_go_over_several_batches(db: Database, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        alice = add_user(conn, "alice")
        add_family(conn, alice, [SESSION_CUTOFF - DAY - i * EPS for i in range(5)])
        live = add_family(conn, alice, [SESSION_CUTOFF + DAY, NOW + DAY])
    assert [await db.run(delete_sessions_past, SESSION_CUTOFF, 2) for _ in range(4)] == [
        2,
        2,
        1,
        0,
    ]
    with psycopg.connect(pg_url) as conn:
        assert families(conn) == {live: 2}


def add_audit(
    conn: psycopg.Connection[Any], user_id: uuid.UUID | None, at: dt.datetime, n: int = 1
) -> None:
    for _ in range(n):
        conn.execute(
            "INSERT INTO audit_logs (user_id, event, meta, created_at) VALUES (%s, 'e', %s, %s)",
            (user_id, Jsonb({}), at),
        )


def audit_times(conn: psycopg.Connection[Any]) -> list[tuple[uuid.UUID | None, dt.datetime]]:
    return [
        (row[0], row[1])
        for row in conn.execute("SELECT user_id, created_at FROM audit_logs ORDER BY id")
    ]


async def test_audit_rows_go_exactly_past_their_retention(db: Database, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        alice = add_user(conn, "alice")
        add_audit(conn, alice, AUDIT_CUTOFF - EPS)
        add_audit(conn, None, AUDIT_CUTOFF - 300 * DAY)  # a deleted user's trail
        add_audit(conn, alice, AUDIT_CUTOFF)
        add_audit(conn, None, AUDIT_CUTOFF + EPS)
        add_audit(conn, alice, NOW)
    assert await db.run(delete_audit_past, AUDIT_CUTOFF, 1000) == 2
    with psycopg.connect(pg_url) as conn:
        assert audit_times(conn) == [
            (alice, AUDIT_CUTOFF),
            (None, AUDIT_CUTOFF + EPS),
            (alice, NOW),
        ]


def add_watch(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, video: str, at: dt.datetime
) -> None:
    video_id = video.ljust(11, "x")
    conn.execute(
        "INSERT INTO video_history (user_id, provider, video_id, title, url, watched_at)"
        " VALUES (%s, 'youtube', %s, 't', %s, %s)",
        (user_id, video_id, f"https://www.youtube.com/watch?v={video_id}", at),
    )


def choose(conn: psycopg.Connection[Any], user_id: uuid.UUID, days: int | None) -> None:
    conn.execute(
        "INSERT INTO settings (user_id, history_retention_days) VALUES (%s, %s)", (user_id, days)
    )


def watched(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT u.oidc_sub, h.video_id FROM video_history h JOIN users u ON u.id = h.user_id"
        " ORDER BY u.oidc_sub, h.video_id"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for sub, video_id in rows:
        out.setdefault(sub, []).append(video_id.rstrip("x"))
    return out


async def test_history_goes_past_each_users_own_retention(db: Database, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        alice, bob = add_user(conn, "alice"), add_user(conn, "bob")
        carol, dave = add_user(conn, "carol"), add_user(conn, "dave")
        choose(conn, alice, 1)
        choose(conn, bob, 7)
        choose(conn, dave, None)  # chose, then went back to "the last five"
        add_watch(conn, alice, "a1", NOW - DAY - EPS)
        add_watch(conn, alice, "a2", NOW - DAY + EPS)
        add_watch(conn, alice, "a3", NOW)
        add_watch(conn, bob, "b1", NOW - 2 * DAY)
        add_watch(conn, bob, "b2", NOW - 7 * DAY - EPS)
        add_watch(conn, bob, "b3", NOW - 7 * DAY + EPS)
        add_watch(conn, carol, "c1", dt.datetime(2010, 1, 1, tzinfo=dt.UTC))
        add_watch(conn, dave, "d1", dt.datetime(2010, 1, 1, tzinfo=dt.UTC))
    assert await db.run(delete_history_past_retention, NOW, 1000) == 2
    with psycopg.connect(pg_url) as conn:
        assert watched(conn) == {
            "alice": ["a2", "a3"],
            "bob": ["b1", "b3"],
            "carol": ["c1"],
            "dave": ["d1"],
        }
    assert await db.run(delete_history_past_retention, NOW, 1000) == 0


def add_run(conn: psycopg.Connection[Any], job: str, end: dt.datetime, state: str) -> None:
    conn.execute(
        "INSERT INTO job_runs (job, period_start, period_end, fence, holder, lease_until, state)"
        " VALUES (%s, %s, %s, nextval('job_fence'), 'r1', %s, %s)",
        (job, end - DAY, end, end, state),
    )


async def test_finished_job_runs_go_past_the_retention(db: Database, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        add_run(conn, "a", AUDIT_CUTOFF - EPS, "succeeded")
        add_run(conn, "b", AUDIT_CUTOFF - EPS, "failed")
        add_run(conn, "c", AUDIT_CUTOFF - EPS, "running")  # never touched
        add_run(conn, "d", AUDIT_CUTOFF + EPS, "succeeded")
    assert await db.run(delete_job_runs_past, AUDIT_CUTOFF, 1000) == 2
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT job FROM job_runs ORDER BY job").fetchall()
    assert [row[0] for row in rows] == ["c", "d"]


async def test_a_backlog_goes_in_bounded_batches_over_runs(db: Database, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        alice = add_user(conn, "alice")
        add_audit(conn, alice, AUDIT_CUTOFF - DAY, 2500)
        add_audit(conn, alice, AUDIT_CUTOFF + EPS, 10)
    assert [await db.run(delete_audit_past, AUDIT_CUTOFF, 1000) for _ in range(2)] == [1000, 1000]

    policy = CleanupPolicy(batch_size=200, max_batches=2, pause_seconds=0)
    counted: list[tuple[str, int]] = []
    store = PostgresCleanup(db)
    first = await run_cleanup(store, policy, NOW, lambda kind, n: counted.append((kind, n)))
    assert first == {
        "sessions": 0,
        "audit": 400,
        "history": 0,
        "job_runs": 0,
        "corpus": 0,
        "capped": ["audit"],
    }
    assert counted == [("audit", 200), ("audit", 200)]
    second = await run_cleanup(store, policy, NOW)
    assert second["audit"] == 100 and second["capped"] == []
    with psycopg.connect(pg_url) as conn:
        assert audit_times(conn) == [(alice, AUDIT_CUTOFF + EPS)] * 10


async def test_rows_held_by_a_request_are_skipped_not_waited_for(db: Database, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        alice = add_user(conn, "alice")
        add_audit(conn, alice, AUDIT_CUTOFF - DAY, 3)
    with psycopg.connect(pg_url) as holder:
        held = holder.execute("SELECT id FROM audit_logs ORDER BY id LIMIT 1 FOR UPDATE")
        held_id = held.fetchone()
        with trio.fail_after(2):  # would block until the holder commits without SKIP LOCKED
            assert await db.run(delete_audit_past, AUDIT_CUTOFF, 1000) == 2
    assert await db.run(delete_audit_past, AUDIT_CUTOFF, 1000) == 1
    assert held_id is not None


async def test_a_session_batch_gives_way_to_a_rotation_holding_a_child(
    db: Database, pg_url: str
) -> None:
    with psycopg.connect(pg_url) as conn:
        alice = add_user(conn, "alice")
        family = add_family(conn, alice, [SESSION_CUTOFF - DAY, NOW + DAY])
        old, child = (row[0] for row in session_rows(conn, family))
    with psycopg.connect(pg_url) as rotation:
        rotation.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (child,))
        started = trio.current_time()
        with trio.fail_after(5):
            # Deleting the old token would set the child's parent_id: locked, so give way.
            assert await db.run(delete_sessions_past, SESSION_CUTOFF, 1000) == 0
        assert trio.current_time() - started < 2
    with psycopg.connect(pg_url) as conn:
        assert [row[0] for row in session_rows(conn, family)] == [old, child]
    assert await db.run(delete_sessions_past, SESSION_CUTOFF, 1000) == 1
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT id, parent_id FROM sessions WHERE family_id = %s", (family,)
        ).fetchall()
    assert rows == [(child, None)]
