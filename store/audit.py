"""Audit log: security-relevant events per user, kept after the user is deleted.

``meta`` must never hold tokens, e-mail addresses or raw IPs. Rather than trusting every
caller, :func:`insert_audit` accepts only the keys in :data:`AUDIT_META_KEYS` with scalar
values; extending the list is a deliberate, reviewed change to this module.

Query functions take a connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

__all__ = [
    "AUDIT_META_KEYS",
    "EVENT_LOGOUT",
    "EVENT_REFRESH_REUSE_DETECTED",
    "EVENT_SIGN_IN",
    "AuditRow",
    "MetaValue",
    "insert_audit",
    "select_audit_for_user",
]

EVENT_SIGN_IN = "sign_in"
EVENT_REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
EVENT_LOGOUT = "logout"

#: The only keys ``meta`` may hold. ``family``: a session family ID; ``method``: how the user
#: signed in (e.g. ``code``, ``id_token``); ``new_user``: the sign-in created the user;
#: ``reason``: a short machine-readable cause; ``count``: how many things an event affected;
#: ``scopes``: OAuth scopes granted (space-separated names, never a token).
AUDIT_META_KEYS = frozenset({"family", "method", "new_user", "reason", "count", "scopes"})

MetaValue = str | int | bool | None

# Event names are identifiers chosen in code, never user input.
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
# Meta strings are IDs and short codes; a long one is a bug (or a token being smuggled in).
_MAX_META_STRING = 100


@attrs.frozen
class AuditRow:
    """One audit event.

    Attributes:
        id: Sequence number (increasing in insertion order).
        user_id: The user concerned; None once the user is deleted (or for anonymous events).
        event: What happened, e.g. ``sign_in``.
        meta: Details, restricted to :data:`AUDIT_META_KEYS`.
        created_at: When it was recorded (database time).
    """

    id: int
    user_id: uuid.UUID | None
    event: str
    meta: dict[str, Any]
    created_at: datetime


def _checked_meta(meta: Mapping[str, MetaValue]) -> dict[str, MetaValue]:
    unknown = sorted(set(meta) - AUDIT_META_KEYS)
    if unknown:
        raise ValueError(f"audit meta keys not allowed: {', '.join(unknown)}")
    for key, value in meta.items():
        if value is not None and not isinstance(value, str | int):  # bool is an int
            raise ValueError(f"audit meta {key!r} must be a str, int, bool or None")
        if isinstance(value, str) and len(value) > _MAX_META_STRING:
            raise ValueError(f"audit meta {key!r} is longer than {_MAX_META_STRING} characters")
    return dict(meta)


INSERT_AUDIT = "INSERT INTO audit_logs (user_id, event, meta) VALUES (%s, %s, %s)"


def insert_audit(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID | None,
    event: str,
    meta: Mapping[str, MetaValue],
) -> None:
    """Record an event.

    Args:
        conn: The connection (inside the caller's transaction: the event commits with it).
        user_id: The user concerned, or None.
        event: A lower-case identifier such as :data:`EVENT_SIGN_IN`.
        meta: Details; keys from :data:`AUDIT_META_KEYS` only, scalar values.

    Raises:
        ValueError: The event name is not an identifier, or ``meta`` has a key outside the
            allow-list, a non-scalar value or an overlong string. Nothing is written.
    """
    if not _EVENT_NAME.fullmatch(event):
        raise ValueError(f"audit event {event!r} is not a lower-case identifier")
    conn.execute(INSERT_AUDIT, (user_id, event, Jsonb(_checked_meta(meta))))


SELECT_AUDIT_FOR_USER = """
SELECT id, user_id, event, meta, created_at FROM audit_logs
WHERE user_id = %s ORDER BY id
"""


def select_audit_for_user(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> list[AuditRow]:
    """Every event of a user, oldest first.

    Args:
        conn: The connection.
        user_id: The user.

    Returns:
        The events, in insertion order.
    """
    cursor = conn.cursor(row_factory=class_row(AuditRow))
    return cursor.execute(SELECT_AUDIT_FOR_USER, (user_id,)).fetchall()
