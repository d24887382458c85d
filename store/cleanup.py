"""Deleting what is past its retention, one bounded batch per call (for ``tasks.cleanup``).

Every function here deletes at most ``limit`` rows in one statement: the rows are picked by
a sub-select with ``LIMIT`` (through the indexes of ``0003_history_retention.sql``), locked
``FOR UPDATE SKIP LOCKED``, and deleted by primary key. The caller runs each batch in its
own short transaction (``Database.run``) and repeats while a batch comes back full, so no
transaction holds many row locks for long, no table is ever locked, and a run can stop
between any two batches.

What goes (``cutoff`` is now minus the retention):

- **sessions**: every refresh token (row) that was revoked (logout, reuse detected: the whole
  family) or expired (idle or absolute expiry) before the cutoff. So a family that ended goes
  whole, and a family still in use loses only its rotated tokens expired long ago: presenting
  one answers "expired" before any reuse check (``smartpip.auth.sessions``), so the row no
  longer serves reuse detection, and a live family's rows do not pile up (one every refresh).
  Every condition holds row by row, so a family may go over several batches, and a token of
  it is refused either way (expired, revoked, or unknown); a deleted parent leaves its child
  with ``parent_id`` NULL.
- **audit_logs**: rows created before the cutoff, the anonymous ones (user deleted) included.
- **video_history**: rows watched longer ago than their owner's chosen retention
  (``settings.history_retention_days``; users without one keep their last five whatever
  their age).
- **suggest_corpus**: videos a suggest search last fetched before the cutoff (YouTube's
  developer policies: API data kept at most 30 days without a refresh).
- **job_runs**: finished runs of periods that ended before the cutoff (a running row, or a
  recent one, is never touched; fencing is unaffected: a write for an ended period is refused
  with or without its row).

Orphans: every table referencing ``users`` cascades (``video_history``, ``settings``,
``sessions``) or sets NULL (``audit_logs``, kept as the deletion's trail until its
retention), and ``sessions.parent_id`` sets NULL, so the schema leaves no orphaned rows to
find. Redis needs nothing: every key there has a TTL (popularity buckets included) except
the fencing counters, which must live forever.

Concurrency: the cleanup always gives way to requests.

- Rows another transaction holds (a history write pruning, a session being rotated or its
  family revoked) are skipped (``SKIP LOCKED``): the next run takes them. So picking rows
  never waits, and a request waiting on a row the batch picked waits only for that batch.
- The one wait left is the foreign-key action of a deleted session: its children's
  ``parent_id`` becomes NULL, and a child may be locked by a rotation or a revocation, which
  may in turn wait for a row this batch picked (a revocation updates the whole family).
  :func:`delete_sessions_past` therefore waits at most :data:`LOCK_TIMEOUT` for a lock
  (well under Postgres' one-second deadlock detection), then rolls its batch back and
  reports 0: the revocation goes on, the rows go next run.

Query functions take a connection and never commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import errors as pg_errors

__all__ = [
    "LOCK_TIMEOUT",
    "delete_audit_past",
    "delete_corpus_past",
    "delete_history_past_retention",
    "delete_job_runs_past",
    "delete_sessions_past",
]

#: How long a session batch waits for a lock before giving way (see the module docstring).
#: Why 200 ms: far longer than a rotation's or a revocation's transaction holds a row, far
#: shorter than Postgres' deadlock_timeout (1 s), so a cycle is broken by this side.
LOCK_TIMEOUT = "200ms"
SET_LOCK_TIMEOUT = f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"

# expires_at never exceeds absolute_expires_at (it is min(now + idle, absolute)); the
# absolute test is kept so that the rule does not depend on it. Each test has its index.
DELETE_SESSIONS_PAST = """
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions
    WHERE revoked_at < %(cutoff)s
       OR expires_at < %(cutoff)s
       OR absolute_expires_at < %(cutoff)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""


def delete_sessions_past(conn: psycopg.Connection[Any], cutoff: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` refresh tokens revoked or expired before ``cutoff``.

    Args:
        conn: The connection (one short transaction per batch).
        cutoff: Tokens revoked or expired before this go (timezone-aware).
        limit: At most this many rows.

    Returns:
        How many rows were deleted; 0 when the batch gave way to a lock held longer than
        :data:`LOCK_TIMEOUT` (nothing deleted).
    """
    try:
        with conn.transaction():  # a savepoint: giving way undoes this batch only
            conn.execute(SET_LOCK_TIMEOUT)
            return conn.execute(DELETE_SESSIONS_PAST, {"cutoff": cutoff, "limit": limit}).rowcount
    except pg_errors.LockNotAvailable:
        return 0


DELETE_AUDIT_PAST = """
DELETE FROM audit_logs WHERE id IN (
    SELECT id FROM audit_logs WHERE created_at < %(cutoff)s LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""


def delete_audit_past(conn: psycopg.Connection[Any], cutoff: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` audit rows created before ``cutoff``.

    Args:
        conn: The connection (one short transaction per batch).
        cutoff: Rows created before this go (timezone-aware).
        limit: At most this many rows.

    Returns:
        How many rows were deleted.
    """
    return conn.execute(DELETE_AUDIT_PAST, {"cutoff": cutoff, "limit": limit}).rowcount


DELETE_HISTORY_PAST_RETENTION = """
DELETE FROM video_history WHERE id IN (
    SELECT h.id FROM settings s
    JOIN video_history h ON h.user_id = s.user_id
    WHERE s.history_retention_days IS NOT NULL
      AND h.watched_at < %(now)s - make_interval(days => s.history_retention_days)
    LIMIT %(limit)s
    FOR UPDATE OF h SKIP LOCKED
)
"""


def delete_history_past_retention(
    conn: psycopg.Connection[Any], now: dt.datetime, limit: int
) -> int:
    """Delete up to ``limit`` history rows watched longer ago than their owner's retention.

    Args:
        conn: The connection (one short transaction per batch).
        now: The time retentions count back from (timezone-aware).
        limit: At most this many rows.

    Returns:
        How many rows were deleted.
    """
    return conn.execute(DELETE_HISTORY_PAST_RETENTION, {"now": now, "limit": limit}).rowcount


DELETE_JOB_RUNS_PAST = """
DELETE FROM job_runs WHERE (job, period_start) IN (
    SELECT job, period_start FROM job_runs
    WHERE state <> 'running' AND period_end < %(cutoff)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""


def delete_job_runs_past(conn: psycopg.Connection[Any], cutoff: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` finished job runs of periods that ended before ``cutoff``.

    Args:
        conn: The connection (one short transaction per batch).
        cutoff: Runs of periods ended before this go (timezone-aware).
        limit: At most this many rows.

    Returns:
        How many rows were deleted.
    """
    return conn.execute(DELETE_JOB_RUNS_PAST, {"cutoff": cutoff, "limit": limit}).rowcount


DELETE_CORPUS_PAST = """
DELETE FROM suggest_corpus WHERE video_id IN (
    SELECT video_id FROM suggest_corpus WHERE fetched_at < %(cutoff)s LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""


def delete_corpus_past(conn: psycopg.Connection[Any], cutoff: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` corpus rows not refreshed since ``cutoff`` (the 30-day purge).

    Args:
        conn: The connection (one short transaction per batch).
        cutoff: Rows last fetched before this go (timezone-aware).
        limit: At most this many rows.

    Returns:
        How many rows were deleted.
    """
    return conn.execute(DELETE_CORPUS_PAST, {"cutoff": cutoff, "limit": limit}).rowcount
