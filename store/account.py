"""A user's whole account: the data export and the deletion, each one transaction.

Both read or write every table that holds rows of a user: ``users``, ``video_history``,
``settings``, ``sessions``, ``audit_logs`` and ``oauth_accounts``. A table added later that
references ``users`` must be added here too (the account tests check every table of the
schema).

Query functions take a connection and never commit: the caller owns the transaction
(``Database.run``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs
import psycopg
from psycopg.rows import class_row

from store.audit import AuditRow, insert_audit, select_audit_for_user
from store.oauth_accounts import ConnectionRow, select_connection
from store.playlists import PlaylistExport, select_playlist_export
from store.sessions import SessionRow, lock_user_sessions, select_user_sessions

__all__ = [
    "EVENT_ACCOUNT_DELETED",
    "AccountRow",
    "DeletedAccount",
    "HistoryRow",
    "SettingsRow",
    "UserExport",
    "delete_account",
    "select_user_export",
]

#: The audit event left behind by a deletion: no user ID, empty meta.
EVENT_ACCOUNT_DELETED = "account_deleted"


@attrs.frozen
class AccountRow:
    """The user row, identity included (the export shows the user everything we hold)."""

    id: uuid.UUID
    oidc_iss: str
    oidc_sub: str
    created_at: datetime


@attrs.frozen
class SettingsRow:
    """The stored settings of a user."""

    auto_pip: bool
    skip_seconds: int
    site_flags: dict[str, Any]
    history_retention_days: int | None
    history_paused: bool
    updated_at: datetime


@attrs.frozen
class HistoryRow:
    """One watched video."""

    provider: str
    video_id: str
    title: str
    url: str
    watched_at: datetime


@attrs.frozen
class UserExport:
    """Every row held about one user, read from one snapshot.

    ``sessions`` carry ``token_hash``: drop it before exposing them.
    """

    account: AccountRow
    settings: SettingsRow | None
    history: list[HistoryRow]
    sessions: list[SessionRow]
    audit: list[AuditRow]
    youtube: ConnectionRow | None = None
    playlist: PlaylistExport | None = None


@attrs.frozen
class DeletedAccount:
    """What a deletion removed (counts, for the log; no personal data)."""

    history: int
    settings: int
    sessions: int
    audit: int
    oauth_accounts: int = 0


# The first statement of the transaction, so that every SELECT after it reads one snapshot:
# under the default READ COMMITTED each statement would see the commits made between them
# (a history write landing between the history and the audit query, say).
EXPORT_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
SELECT_ACCOUNT = "SELECT id, oidc_iss, oidc_sub, created_at FROM users WHERE id = %s"
SELECT_SETTINGS = """
SELECT auto_pip, skip_seconds, site_flags, history_retention_days, history_paused, updated_at
FROM settings WHERE user_id = %s
"""
SELECT_HISTORY = """
SELECT provider, video_id, title, url, watched_at FROM video_history
WHERE user_id = %s ORDER BY watched_at DESC, id DESC
"""


def select_user_export(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> UserExport | None:
    """Everything held about a user, consistent as of one moment.

    Must be the first thing the transaction runs (it sets the isolation level: REPEATABLE
    READ, read-only, so all the reads share one snapshot).

    Args:
        conn: The connection, at the start of a transaction.
        user_id: The user.

    Returns:
        The export, or None if there is no such user (never existed, or deleted).
    """
    conn.execute(EXPORT_SNAPSHOT)
    account = (
        conn.cursor(row_factory=class_row(AccountRow))
        .execute(SELECT_ACCOUNT, (user_id,))
        .fetchone()
    )
    if account is None:
        return None
    settings = (
        conn.cursor(row_factory=class_row(SettingsRow))
        .execute(SELECT_SETTINGS, (user_id,))
        .fetchone()
    )
    history = (
        conn.cursor(row_factory=class_row(HistoryRow))
        .execute(SELECT_HISTORY, (user_id,))
        .fetchall()
    )
    return UserExport(
        account=account,
        settings=settings,
        history=history,
        sessions=select_user_sessions(conn, user_id),
        audit=select_audit_for_user(conn, user_id),
        youtube=select_connection(conn, user_id),
        playlist=select_playlist_export(conn, user_id),
    )


LOCK_USER = "SELECT 1 FROM users WHERE id = %s FOR UPDATE"
DELETE_HISTORY = "DELETE FROM video_history WHERE user_id = %s"
DELETE_SETTINGS = "DELETE FROM settings WHERE user_id = %s"
DELETE_SESSIONS = "DELETE FROM sessions WHERE user_id = %s"
DELETE_AUDIT = "DELETE FROM audit_logs WHERE user_id = %s"
DELETE_OAUTH_ACCOUNTS = "DELETE FROM oauth_accounts WHERE user_id = %s"
DELETE_USER = "DELETE FROM users WHERE id = %s"


def delete_account(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> DeletedAccount | None:
    """Erase a user: history, settings, sessions, audit trail, Google grant, then the user row.

    The audit trail: the user's events are deleted rather than merely detached. Detached
    (user ID null, meta emptied) they would be useless to an investigation, yet still a
    timeline of one person's sign-ins sitting next to the deletion event. What stays is a
    single ``account_deleted`` event with no user ID and an empty meta, so that a deletion
    remains auditable (when, and how many) without saying whose.

    Locking, in this order (the order every other writer uses too, so no cycle can form):
    the user's session lock (:func:`store.sessions.lock_user_sessions`: a refresh rotating a
    token of this user waits, then finds its row gone and answers ``unknown``, instead of
    deadlocking against the cascade), then the user row ``FOR UPDATE`` (a concurrent
    first-write of history or settings, whose foreign-key check takes ``FOR KEY SHARE`` on it,
    either commits before, and its row is deleted here, or waits and then fails its check).
    A sign-in of the same identity racing the deletion waits on the row and, once it is gone,
    creates a new user with a new ID.

    Args:
        conn: The connection, inside the caller's transaction.
        user_id: The user.

    Returns:
        What was removed, or None if there was no such user (nothing written, not even the
        audit event, so a retried deletion is not counted twice).
    """
    lock_user_sessions(conn, user_id)
    if conn.execute(LOCK_USER, (user_id,)).fetchone() is None:
        return None
    removed = DeletedAccount(
        history=conn.execute(DELETE_HISTORY, (user_id,)).rowcount,
        settings=conn.execute(DELETE_SETTINGS, (user_id,)).rowcount,
        sessions=conn.execute(DELETE_SESSIONS, (user_id,)).rowcount,
        audit=conn.execute(DELETE_AUDIT, (user_id,)).rowcount,
        oauth_accounts=conn.execute(DELETE_OAUTH_ACCOUNTS, (user_id,)).rowcount,
    )
    insert_audit(conn, None, EVENT_ACCOUNT_DELETED, {})
    conn.execute(DELETE_USER, (user_id,))
    return removed
