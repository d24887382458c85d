"""A user's stored Google grant (``oauth_accounts``): the sealed refresh token and its scopes.

The token arrives and leaves sealed (:class:`SealedRow` fields ``key_id`` and
``token_sealed``); this module never sees it in the clear. Query functions take a connection
and never commit: the caller owns the transaction.

Concurrency: one row per user (primary key). A reconnect replaces the row's token in place. A
deletion after Google refused a token (``invalid_grant``) and a rotation both name the sealed
value they read (compare-and-set), so neither undoes a reconnect that committed in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs
import psycopg
from psycopg.rows import class_row

__all__ = [
    "ConnectionRow",
    "SealedRow",
    "delete_oauth_account",
    "delete_oauth_account_if_sealed",
    "reseal_oauth_account",
    "select_connection",
    "select_identity",
    "select_rows_to_reseal",
    "select_sealed",
    "upsert_oauth_account",
]


@attrs.frozen
class ConnectionRow:
    """What may be shown about a grant (status, export): never the token."""

    subject: str
    scopes: list[str]
    connected_at: datetime
    updated_at: datetime


@attrs.frozen
class SealedRow:
    """The sealed refresh token of a user's grant, with what the caller needs to open it."""

    user_id: uuid.UUID
    key_id: str
    token_sealed: bytes = attrs.field(repr=False)
    scopes: list[str] = attrs.field(factory=list)


# INSERT ... SELECT from users: a user deleted meanwhile gets no row (rather than a foreign-key
# error). A reconnect keeps connected_at (connected since) and moves updated_at.
UPSERT = """
INSERT INTO oauth_accounts (user_id, subject, key_id, token_sealed, scopes)
SELECT id, %(subject)s, %(key_id)s, %(sealed)s, %(scopes)s FROM users WHERE id = %(user_id)s
ON CONFLICT (user_id) DO UPDATE SET
    subject = EXCLUDED.subject, key_id = EXCLUDED.key_id, token_sealed = EXCLUDED.token_sealed,
    scopes = EXCLUDED.scopes, updated_at = now()
RETURNING subject, scopes, connected_at, updated_at
"""


def upsert_oauth_account(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    *,
    subject: str,
    key_id: str,
    token_sealed: bytes,
    scopes: Sequence[str],
) -> ConnectionRow | None:
    """Store (or replace) the user's grant; None when the user no longer exists."""
    params = {
        "user_id": user_id,
        "subject": subject,
        "key_id": key_id,
        "sealed": token_sealed,
        "scopes": list(scopes),
    }
    return conn.cursor(row_factory=class_row(ConnectionRow)).execute(UPSERT, params).fetchone()


SELECT_CONNECTION = """
SELECT subject, scopes, connected_at, updated_at FROM oauth_accounts WHERE user_id = %s
"""


def select_connection(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> ConnectionRow | None:
    """The user's grant without its token, or None when not connected."""
    cursor = conn.cursor(row_factory=class_row(ConnectionRow))
    return cursor.execute(SELECT_CONNECTION, (user_id,)).fetchone()


SELECT_SEALED = """
SELECT user_id, key_id, token_sealed, scopes FROM oauth_accounts WHERE user_id = %s
"""


def select_sealed(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> SealedRow | None:
    """The user's sealed refresh token, or None when not connected."""
    cursor = conn.cursor(row_factory=class_row(SealedRow))
    return cursor.execute(SELECT_SEALED, (user_id,)).fetchone()


DELETE = """
DELETE FROM oauth_accounts WHERE user_id = %s
RETURNING user_id, key_id, token_sealed, scopes
"""


def delete_oauth_account(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> SealedRow | None:
    """Delete the user's grant; the deleted row (to revoke its token), or None."""
    return conn.cursor(row_factory=class_row(SealedRow)).execute(DELETE, (user_id,)).fetchone()


DELETE_IF_SEALED = """
DELETE FROM oauth_accounts WHERE user_id = %s AND key_id = %s AND token_sealed = %s
"""


def delete_oauth_account_if_sealed(conn: psycopg.Connection[Any], row: SealedRow) -> bool:
    """Delete the grant only if it still holds ``row``'s token (not reconnected since)."""
    params = (row.user_id, row.key_id, row.token_sealed)
    return conn.execute(DELETE_IF_SEALED, params).rowcount == 1


SELECT_TO_RESEAL = """
SELECT user_id, key_id, token_sealed, scopes FROM oauth_accounts
WHERE key_id <> %s AND user_id > %s ORDER BY user_id LIMIT %s
"""


def select_rows_to_reseal(
    conn: psycopg.Connection[Any], current_kid: str, *, after: uuid.UUID, limit: int
) -> list[SealedRow]:
    """Up to ``limit`` grants not sealed under ``current_kid``, by user ID after ``after``."""
    cursor = conn.cursor(row_factory=class_row(SealedRow))
    return cursor.execute(SELECT_TO_RESEAL, (current_kid, after, limit)).fetchall()


RESEAL = """
UPDATE oauth_accounts SET key_id = %s, token_sealed = %s
WHERE user_id = %s AND key_id = %s AND token_sealed = %s
"""


def reseal_oauth_account(
    conn: psycopg.Connection[Any], row: SealedRow, *, key_id: str, token_sealed: bytes
) -> bool:
    """Replace ``row``'s sealed token by the same token sealed anew; False when the row
    changed (reconnected, disconnected) since it was read."""
    params = (key_id, token_sealed, row.user_id, row.key_id, row.token_sealed)
    return conn.execute(RESEAL, params).rowcount == 1


SELECT_IDENTITY = "SELECT oidc_iss, oidc_sub FROM users WHERE id = %s"


def select_identity(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> tuple[str, str] | None:
    """The user's sign-in identity ``(issuer, subject)``, or None when the user is gone."""
    row = conn.execute(SELECT_IDENTITY, (user_id,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
