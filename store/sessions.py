"""Refresh-token sessions, grouped in families (one family per sign-in).

Each refresh rotates: the presented row is marked used and a child row (same family, parent =
the presented row) holds the new token. Only the SHA-256 digest of a token is stored (32 bytes,
``token_hash``); the token itself never reaches the database.

Concurrency rule (enforced by :func:`lock_user_sessions`): every transaction that changes a
user's sessions (creates, rotates, revokes) first takes that user's session lock, then reads
what it decides on. Under READ COMMITTED each statement after the lock sees everything earlier
lock holders committed, so for one user these transactions behave as if run one at a time:

- two refreshes of the same token: the second sees the first one's ``used_at``;
- a family revocation racing a rotation inside the family: either the rotation commits first
  and the revocation's ``UPDATE`` sees (and revokes) the new child, or the revocation commits
  first and the rotation sees ``revoked_at``. Without the lock, a child inserted while the
  revocation waited on the parent's row lock would be missed by the revocation's snapshot and
  survive it;
- likewise for the deletion of a user's sessions (``store.account``) against any rotation.

Query functions take a connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs
import psycopg
from psycopg.rows import class_row

__all__ = [
    "SESSION_LOCK_NAMESPACE",
    "TOKEN_HASH_BYTES",
    "SessionRow",
    "insert_session",
    "lock_user_sessions",
    "mark_session_used",
    "revoke_family",
    "select_session_for_update",
    "select_session_owner",
    "select_user_sessions",
]

#: Length of a stored token digest (SHA-256); the table's CHECK constraint agrees.
TOKEN_HASH_BYTES = 32

#: First key of the two-key advisory locks taken by :func:`lock_user_sessions`: b"SESS" as a
#: signed 32-bit integer. Two-key advisory locks never collide with single-key ones (such as
#: the migration lock); other two-key users in this database must pick another namespace.
SESSION_LOCK_NAMESPACE = 0x53455353


@attrs.frozen
class SessionRow:
    """One refresh token of a family, with every column of ``sessions``.

    ``token_hash`` is kept so that the row is complete, but it is a credential verifier: never
    log it or hand it to a client (a data export lists sessions without it). It is left out of
    ``repr`` for that reason.

    Attributes:
        id: The session's ID.
        user_id: Whose session it is.
        family_id: Shared by every rotation descending from one sign-in.
        parent_id: The session this one was rotated from; None for the first of a family (or
            once the parent row was deleted).
        token_hash: SHA-256 of the refresh token (32 bytes).
        created_at: When the row was written (database time).
        last_used_at: When the token was last presented for a refresh; None if never.
        expires_at: Idle expiry: the token is refused from then on.
        absolute_expires_at: The family's hard expiry, copied to every row of the family.
        used_at: When the token was first rotated; presenting it again after the grace window
            revokes the family.
        revoked_at: When the family was revoked (logout, reuse detected, account deletion).
    """

    id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID
    parent_id: uuid.UUID | None
    token_hash: bytes = attrs.field(repr=False)
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    absolute_expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


_COLUMNS = """id, user_id, family_id, parent_id, token_hash, created_at, last_used_at,
expires_at, absolute_expires_at, used_at, revoked_at"""

LOCK_USER_SESSIONS = "SELECT pg_advisory_xact_lock(%s, %s)"


def lock_user_sessions(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> None:
    """Take the user's session lock until the transaction ends.

    This is the lock behind the module's concurrency rule: take it before reading the session
    state a change depends on, and before any row lock on ``sessions`` (always this lock first,
    so that no two writers can wait for each other in a cycle). It is a transaction-level
    advisory lock keyed by ``(SESSION_LOCK_NAMESPACE, first 32 bits of the user ID)``; two
    users sharing a key merely wait for each other. Callers deleting a user should take it too,
    before the ``DELETE``, so that a concurrent rotation cannot deadlock with the cascade.

    Args:
        conn: The connection, inside a transaction (the lock is released at its end).
        user_id: The user whose sessions are about to change.
    """
    key = int.from_bytes(user_id.bytes[:4], "big", signed=True)
    conn.execute(LOCK_USER_SESSIONS, (SESSION_LOCK_NAMESPACE, key))


INSERT_SESSION = """
INSERT INTO sessions (user_id, family_id, parent_id, token_hash, expires_at, absolute_expires_at)
VALUES (%s, %s, %s, %s, %s, %s)
RETURNING id
"""


def insert_session(
    conn: psycopg.Connection[Any],
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    token_hash: bytes,
    expires_at: datetime,
    absolute_expires_at: datetime,
) -> uuid.UUID:
    """Store a new refresh token (only its digest).

    Args:
        conn: The connection, holding the user's session lock.
        user_id: The owner.
        family_id: A new ID for a sign-in, else the presented session's family.
        parent_id: The presented session when rotating, else None.
        token_hash: SHA-256 of the token, 32 bytes.
        expires_at: Idle expiry (timezone-aware).
        absolute_expires_at: The family's hard expiry (timezone-aware).

    Returns:
        The new session's ID.

    Raises:
        ValueError: ``token_hash`` is not 32 bytes.
        psycopg.errors.ForeignKeyViolation: The user (or parent) does not exist.
    """
    if len(token_hash) != TOKEN_HASH_BYTES:
        raise ValueError(f"token_hash must be {TOKEN_HASH_BYTES} bytes")
    params = (user_id, family_id, parent_id, token_hash, expires_at, absolute_expires_at)
    row = conn.execute(INSERT_SESSION, params).fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    session_id: uuid.UUID = row[0]
    return session_id


SELECT_SESSION_OWNER = "SELECT user_id FROM sessions WHERE token_hash = %s"


def select_session_owner(conn: psycopg.Connection[Any], token_hash: bytes) -> uuid.UUID | None:
    """Whose token this is, read without locking (to know which session lock to take).

    Args:
        conn: The connection.
        token_hash: SHA-256 of the presented token.

    Returns:
        The owner's user ID, or None for an unknown token.
    """
    row = conn.execute(SELECT_SESSION_OWNER, (token_hash,)).fetchone()
    return None if row is None else uuid.UUID(str(row[0]))


SELECT_SESSION_FOR_UPDATE = f"SELECT {_COLUMNS} FROM sessions WHERE token_hash = %s FOR UPDATE"


def select_session_for_update(
    conn: psycopg.Connection[Any], token_hash: bytes
) -> SessionRow | None:
    """The session of a token, row-locked until the transaction ends.

    Take the user's session lock (:func:`lock_user_sessions`) first. The row lock also keeps
    out writers that do not take that lock (e.g. a cleanup job deleting expired rows): if one
    deleted the row meanwhile, this returns None.

    Args:
        conn: The connection.
        token_hash: SHA-256 of the presented token.

    Returns:
        The session, or None for an unknown token.
    """
    cursor = conn.cursor(row_factory=class_row(SessionRow))
    return cursor.execute(SELECT_SESSION_FOR_UPDATE, (token_hash,)).fetchone()


MARK_SESSION_USED = """
UPDATE sessions SET used_at = COALESCE(used_at, %(at)s), last_used_at = %(at)s WHERE id = %(id)s
"""


def mark_session_used(conn: psycopg.Connection[Any], session_id: uuid.UUID, at: datetime) -> None:
    """Record that a token was presented for a refresh.

    ``used_at`` keeps the first use (the reuse grace window counts from the first rotation, so
    it cannot be stretched by presenting the token again); ``last_used_at`` is always ``at``.

    Args:
        conn: The connection, holding the user's session lock.
        session_id: The presented session.
        at: When (timezone-aware).
    """
    conn.execute(MARK_SESSION_USED, {"at": at, "id": session_id})


REVOKE_FAMILY = """
UPDATE sessions SET revoked_at = %s WHERE family_id = %s AND revoked_at IS NULL
"""


def revoke_family(conn: psycopg.Connection[Any], family_id: uuid.UUID, at: datetime) -> int:
    """Revoke every token of a family (logout, reuse detected).

    Args:
        conn: The connection, holding the owner's session lock (see the module docstring for
            why a revocation without it can miss a concurrently rotated token).
        family_id: The family.
        at: When (timezone-aware).

    Returns:
        How many sessions were revoked now (already revoked ones are left as they were).
    """
    return conn.execute(REVOKE_FAMILY, (at, family_id)).rowcount


SELECT_USER_SESSIONS = f"SELECT {_COLUMNS} FROM sessions WHERE user_id = %s ORDER BY created_at, id"


def select_user_sessions(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> list[SessionRow]:
    """Every session row of a user, oldest first (for the data export and tests).

    The rows carry ``token_hash``: drop it before exposing them.

    Args:
        conn: The connection.
        user_id: The user.

    Returns:
        The sessions, oldest first.
    """
    cursor = conn.cursor(row_factory=class_row(SessionRow))
    return cursor.execute(SELECT_USER_SESSIONS, (user_id,)).fetchall()
