"""Users: one row per OpenID Connect identity (issuer, subject); no e-mail or name is stored.

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

__all__ = ["UserRow", "select_user", "upsert_user"]


@attrs.frozen
class UserRow:
    """What the service exposes about a user.

    Attributes:
        id: The user's ID (the ``sub`` of our access tokens).
        created_at: When the user first signed in.
    """

    id: uuid.UUID
    created_at: datetime


UPSERT_USER = """
INSERT INTO users (oidc_iss, oidc_sub) VALUES (%s, %s)
ON CONFLICT (oidc_iss, oidc_sub) DO UPDATE SET created_at = users.created_at
RETURNING id, (xmax = 0) AS created
"""


def upsert_user(conn: psycopg.Connection[Any], iss: str, sub: str) -> tuple[uuid.UUID, bool]:
    """Find the user of an OIDC identity, creating it on first sign-in.

    Concurrency: one statement, race-free. Of two transactions signing in the same new
    identity at once, one inserts; the other waits on the unique index entry
    ``(oidc_iss, oidc_sub)`` until the first commits, then takes the ``DO UPDATE`` branch and
    returns the same ID with ``created`` false. (A single statement combining ``DO NOTHING``
    with a ``SELECT`` would not do: its one snapshot predates the other's commit, so it would
    find no row.) ``xmax = 0`` holds exactly for a tuple this statement inserted.

    The no-op update sets ``created_at``, a column outside every unique index, on purpose: the
    row is then locked ``FOR NO KEY UPDATE`` until commit, which does not conflict with the
    ``FOR KEY SHARE`` locks that foreign-key checks take when other transactions insert rows
    referencing this user (sessions, history). Setting ``oidc_iss`` would take ``FOR UPDATE``
    and could deadlock a sign-in against a concurrent refresh of the same user. It is a HOT
    update (no index touched): one dead tuple per sign-in, reclaimed by autovacuum.

    Args:
        conn: The connection (inside the caller's transaction).
        iss: The identity provider's issuer URL.
        sub: The subject, unique within the issuer (at most 255 characters).

    Returns:
        The user's ID, and whether this call created the user.

    Raises:
        psycopg.errors.CheckViolation: ``iss`` or ``sub`` is empty or too long.
    """
    row = conn.execute(UPSERT_USER, (iss, sub)).fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row[0], bool(row[1])


SELECT_USER = "SELECT id, created_at FROM users WHERE id = %s"


def select_user(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> UserRow | None:
    """The user with this ID.

    Args:
        conn: The connection.
        user_id: The user's ID.

    Returns:
        The user, or None if there is none (never existed, or deleted).
    """
    return conn.cursor(row_factory=class_row(UserRow)).execute(SELECT_USER, (user_id,)).fetchone()
