"""Deleting what is past its retention, one bounded batch per call (for ``tasks.cleanup``).

Every function here deletes at most ``limit`` rows in one statement: the rows are picked by
a sub-select with ``LIMIT`` (through the indexes of ``0003_history_retention.sql``) and
deleted by primary key. The caller runs each batch in its own short transaction
(``Database.run``) and repeats while a batch comes back full, so no transaction holds many
row locks for long, no table is ever locked, and a run can stop between any two batches.

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
- **job_runs**: finished runs of periods that ended before the cutoff (a running row, or a
  recent one, is never touched; fencing is unaffected: a write for an ended period is refused
  with or without its row).

Orphans: every table referencing ``users`` cascades (``video_history``, ``settings``,
``sessions``) or sets NULL (``audit_logs``, kept as the deletion's trail until its
retention), and ``sessions.parent_id`` sets NULL, so the schema leaves no orphaned rows to
find. Redis needs nothing: every key there has a TTL (popularity buckets included) except
the fencing counters, which must live forever.

Concurrency: these statements lock only the rows they delete (and, for a deleted session,
its children, whose ``parent_id`` becomes NULL). A session row being rotated is locked
``FOR UPDATE`` by the rotation, so a batch touching it waits for the rotation's short
transaction (and a token past its expiry or revoked never rotates: it is refused); a
history write holds its owner's row lock and deletions need none (``store.history``). No
cycle is possible: cleanup never waits on a row while holding a lock a rotation or history
write needs first. Query functions take a connection and never commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

__all__ = [
    "delete_audit_past",
    "delete_history_past_retention",
    "delete_job_runs_past",
    "delete_sessions_past",
]

# expires_at never exceeds absolute_expires_at (it is min(now + idle, absolute)); the
# absolute test is kept so that the rule does not depend on it. Each test has its index.
DELETE_SESSIONS_PAST = """
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions
    WHERE revoked_at < %(cutoff)s
       OR expires_at < %(cutoff)s
       OR absolute_expires_at < %(cutoff)s
    LIMIT %(limit)s
)
"""


def delete_sessions_past(conn: psycopg.Connection[Any], cutoff: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` refresh tokens revoked or expired before ``cutoff``.

    Args:
        conn: The connection (one short transaction per batch).
        cutoff: Tokens revoked or expired before this go (timezone-aware).
        limit: At most this many rows.

    Returns:
        How many rows were deleted.
    """
    return conn.execute(DELETE_SESSIONS_PAST, {"cutoff": cutoff, "limit": limit}).rowcount


DELETE_AUDIT_PAST = """
DELETE FROM audit_logs WHERE id IN (
    SELECT id FROM audit_logs WHERE created_at < %(cutoff)s LIMIT %(limit)s
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
