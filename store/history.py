"""Watch history: the last few videos a user watched (``video_history``).

Concurrency rule (enforced by :func:`lock_history_owner`): every transaction that adds to a
user's history first locks that user's ``users`` row (``FOR NO KEY UPDATE``), reading the
user's history settings with it, then upserts, then prunes to the newest
:data:`HISTORY_LIMIT` rows (and those past the user's retention), all in one transaction (see
:func:`record_watch`). So for one user:

- Writers run one at a time. A second writer blocks on the row lock until the first commits;
  under READ COMMITTED each of its later statements then sees the first one's rows. Each
  writer leaves at most ``HISTORY_LIMIT`` rows when it commits, and no writer adds a row
  without pruning afterwards under the same lock, so no interleaving can leave six rows.
- No write is lost: the upsert is one ``INSERT ... ON CONFLICT (user_id, provider, video_id)
  DO UPDATE`` statement, and the only rows a writer deletes are those outside the newest
  ``HISTORY_LIMIT`` at its turn, which is what a serial execution would delete too.
- No serialization failure can surface as a 5xx: transactions run at READ COMMITTED, where
  Postgres never raises ``serialization_failure`` (``ON CONFLICT DO UPDATE`` re-checks the
  conflicting row instead), and no deadlock is possible because every history writer takes
  the same single lock first and only then touches ``video_history`` rows.
- Deletions (:func:`delete_history_entry`, :func:`delete_history`, the cleanup job's
  ``store.cleanup.delete_history_past_retention``) only remove rows, so they cannot break the
  limit and need no lock; a delete racing a write waits on the row the
  write holds and then applies to what the write committed.
- A settings change (pausing, a retention) racing a write: the write read the settings
  committed when it took the lock, so it behaves as if it ran wholly before the change or
  wholly after it.
- ``FOR NO KEY UPDATE`` does not conflict with the ``FOR KEY SHARE`` locks that foreign-key
  checks take, so sign-ins and session rotations of the user are not blocked by it. It does
  conflict with ``DELETE FROM users``: an account deletion waits for a history write (or the
  write waits and then finds no user, :class:`HistoryOwnerMissing`). Code deleting a user
  that also touches ``video_history`` rows first should take this lock first to keep the
  lock order (user row, then history rows) and so stay deadlock-free.

Query functions take a connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row

__all__ = [
    "HISTORY_LIMIT",
    "HistoryOwnerMissing",
    "HistoryRow",
    "HistoryWrite",
    "OwnerSettings",
    "delete_history",
    "delete_history_entry",
    "lock_history_owner",
    "prune_history",
    "record_watch",
    "select_history",
    "upsert_history_entry",
]

#: How many videos a user's history keeps (the product rule: "the five videos they watched
#: last"; small enough that every read is one index range scan of a few rows).
HISTORY_LIMIT = 5


class HistoryOwnerMissing(Exception):
    """The user a history write is for does not exist (the account was deleted)."""


@attrs.frozen
class HistoryRow:
    """One watched video (the columns a client sees).

    Attributes:
        provider: The video platform, e.g. ``youtube``.
        video_id: The platform's video ID.
        title: The title at the time of watching.
        url: The page the video was watched on.
        watched_at: When (timezone-aware).
    """

    provider: str
    video_id: str
    title: str
    url: str
    watched_at: datetime


@attrs.frozen
class OwnerSettings:
    """What a history write needs of the owner's settings.

    Attributes:
        paused: The user paused their history: record nothing.
        retention_days: Keep rows this many days (by ``watched_at``); None: no age limit.
    """

    paused: bool = False
    retention_days: int | None = None


@attrs.frozen
class HistoryWrite:
    """The outcome of :func:`record_watch`.

    Attributes:
        items: The user's history after the write, newest first.
        recorded: False when the user's history is paused (nothing was written).
    """

    items: list[HistoryRow]
    recorded: bool


# The settings row is read, not locked (FOR ... OF u): a settings write never waits for a
# history write, and the history write sees the settings committed before it took the lock.
LOCK_HISTORY_OWNER = """
SELECT s.history_paused, s.history_retention_days
FROM users u LEFT JOIN settings s ON s.user_id = u.id
WHERE u.id = %s FOR NO KEY UPDATE OF u
"""


def lock_history_owner(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> OwnerSettings | None:
    """Lock the user's row until the transaction ends: the lock of the module's rule.

    Args:
        conn: The connection, inside a transaction.
        user_id: The user whose history is about to grow.

    Returns:
        The user's history settings, or None if there is no such user (nothing is locked
        then).
    """
    row = conn.execute(LOCK_HISTORY_OWNER, (user_id,)).fetchone()
    if row is None:
        return None
    paused, retention_days = row
    return OwnerSettings(paused=bool(paused), retention_days=retention_days)


UPSERT_HISTORY_ENTRY = """
INSERT INTO video_history (user_id, provider, video_id, title, url, watched_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, provider, video_id) DO UPDATE SET
    title = EXCLUDED.title,
    url = EXCLUDED.url,
    watched_at = EXCLUDED.watched_at,
    id = nextval(pg_get_serial_sequence('video_history', 'id'))
"""


def upsert_history_entry(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, entry: HistoryRow
) -> None:
    """Insert a watched video, or refresh the user's existing row of the same video.

    A re-watch takes a new ``id`` too, so that among rows with equal ``watched_at`` the last
    written one sorts first (``watched_at DESC, id DESC``).

    Args:
        conn: The connection, holding :func:`lock_history_owner`.
        user_id: The owner.
        entry: The video.

    Raises:
        psycopg.errors.ForeignKeyViolation: The user does not exist.
    """
    params = (user_id, entry.provider, entry.video_id, entry.title, entry.url, entry.watched_at)
    conn.execute(UPSERT_HISTORY_ENTRY, params)


# A NULL cutoff compares as unknown: no age limit.
PRUNE_HISTORY = """
DELETE FROM video_history WHERE user_id = %(user)s AND (
    id NOT IN (
        SELECT id FROM video_history WHERE user_id = %(user)s
        ORDER BY watched_at DESC, id DESC LIMIT %(keep)s
    )
    OR watched_at < %(cutoff)s::timestamptz
)
"""


def prune_history(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    keep: int = HISTORY_LIMIT,
    *,
    older_than: datetime | None = None,
) -> int:
    """Delete all but the ``keep`` newest rows of the user, and any watched before a time.

    Args:
        conn: The connection, holding :func:`lock_history_owner`.
        user_id: The owner.
        keep: How many rows to keep.
        older_than: Also delete the rows watched before this (the user's retention).

    Returns:
        How many rows were deleted (-1 inside a pipeline, where the count is not known yet).
    """
    params = {"user": user_id, "keep": keep, "cutoff": older_than}
    return conn.execute(PRUNE_HISTORY, params).rowcount


SELECT_HISTORY = """
SELECT provider, video_id, title, url, watched_at FROM video_history
WHERE user_id = %s ORDER BY watched_at DESC, id DESC LIMIT %s
"""


def select_history(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, limit: int = HISTORY_LIMIT
) -> list[HistoryRow]:
    """The user's newest videos, newest first.

    Args:
        conn: The connection.
        user_id: The owner.
        limit: At most this many rows.

    Returns:
        The rows, ``watched_at`` descending (the last written first on ties).
    """
    cursor = conn.cursor(row_factory=class_row(HistoryRow))
    return cursor.execute(SELECT_HISTORY, (user_id, limit)).fetchall()


def record_watch(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    entry: HistoryRow,
    *,
    now: datetime | None = None,
) -> HistoryWrite:
    """Lock, upsert, prune, read back: the whole history write, in the caller's transaction.

    Honours the user's history settings: while paused nothing is written (the history is read
    back as it is); with a retention, rows watched longer ago than it are pruned too (the
    entry itself included: it is then not kept, like an entry older than the five newest).

    Args:
        conn: The connection, inside a transaction (``Database.run``).
        user_id: The owner.
        entry: The video watched.
        now: The time the retention counts back from (timezone-aware; default: the
            database's clock).

    Returns:
        The user's history after the write, newest first, and whether the entry was
        recorded (False while the history is paused).

    Raises:
        HistoryOwnerMissing: The user does not exist (deleted account).
    """
    owner = lock_history_owner(conn, user_id)
    if owner is None:
        raise HistoryOwnerMissing(str(user_id))
    if owner.paused:
        return HistoryWrite(select_history(conn, user_id), recorded=False)
    cutoff = None
    if owner.retention_days is not None:
        cutoff = (now or _database_now(conn)) - timedelta(days=owner.retention_days)
    # Upsert, prune and read back in one round trip (psycopg's pipeline mode): the statements
    # run in this order in the same transaction, as they would one by one; an error in one
    # skips the rest and is raised when the read back fetches its rows.
    try:
        with conn.pipeline():
            upsert_history_entry(conn, user_id, entry)
            prune_history(conn, user_id, older_than=cutoff)
            items = select_history(conn, user_id)
    except pg_errors.ForeignKeyViolation as error:  # unreachable under the lock; kept as a net
        raise HistoryOwnerMissing(str(user_id)) from error
    return HistoryWrite(items, recorded=True)


SELECT_NOW = "SELECT now()"


def _database_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute(SELECT_NOW).fetchone()
    assert row is not None
    when: datetime = row[0]
    return when


DELETE_HISTORY_ENTRY = """
DELETE FROM video_history WHERE user_id = %s AND provider = %s AND video_id = %s
"""


def delete_history_entry(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, provider: str, video_id: str
) -> int:
    """Forget one video of the user.

    Args:
        conn: The connection.
        user_id: The owner.
        provider: The video's platform.
        video_id: The platform's video ID.

    Returns:
        How many rows were deleted (0 or 1).
    """
    return conn.execute(DELETE_HISTORY_ENTRY, (user_id, provider, video_id)).rowcount


DELETE_HISTORY = "DELETE FROM video_history WHERE user_id = %s"


def delete_history(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> int:
    """Forget the user's whole history.

    Args:
        conn: The connection.
        user_id: The owner.

    Returns:
        How many rows were deleted.
    """
    return conn.execute(DELETE_HISTORY, (user_id,)).rowcount
