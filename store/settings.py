"""Per-user extension settings: one ``settings`` row per user, created on first write.

Query functions take a connection and never commit: the caller owns the transaction
(``Database.run``). A user without a row has the defaults (:data:`DEFAULT_SETTINGS`, which
mirror the column defaults of ``0001_initial.sql``).

Concurrency: a read-modify-write (``If-Match``, ``PATCH`` merges) calls
:func:`lock_settings` first. It inserts the default row if there is none and then takes the
row lock (``FOR UPDATE``), so even the very first write of a user serialises against another
one: the second transaction's ``INSERT ... ON CONFLICT DO NOTHING`` waits for the first to
commit, and its ``SELECT ... FOR UPDATE`` (a new snapshot under READ COMMITTED) then sees the
first one's committed document. A plain ``SELECT ... FOR UPDATE`` would lock nothing while the
row does not exist yet, and two first writers would both win.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

__all__ = [
    "DEFAULT_SETTINGS",
    "HISTORY_RETENTION_DAYS",
    "SettingsRow",
    "SiteFlags",
    "UserGone",
    "lock_settings",
    "select_settings",
    "upsert_settings",
]

#: host -> flag name -> value.
SiteFlags = Mapping[str, Mapping[str, bool]]


class UserGone(Exception):
    """The user has no row any more (the account was deleted while a token still lived)."""


@attrs.frozen
class SettingsRow:
    """One user's settings as stored.

    Attributes:
        auto_pip: Enter picture-in-picture automatically.
        skip_seconds: Seconds the skip buttons jump (1 to 300).
        site_flags: Per-host boolean flags.
        history_retention_days: Keep watched videos this many days (one of
            :data:`HISTORY_RETENTION_DAYS`); None keeps the last five whatever their age.
        history_paused: While true, watched videos are not recorded.
    """

    auto_pip: bool
    skip_seconds: int
    site_flags: SiteFlags
    history_retention_days: int | None = None
    history_paused: bool = False


#: The history retentions a user may choose (days); the table's CHECK agrees.
HISTORY_RETENTION_DAYS = (1, 7, 30, 90)

#: What a user who never saved settings has; equal to the column defaults of the table.
DEFAULT_SETTINGS = SettingsRow(auto_pip=False, skip_seconds=10, site_flags={})


def _row(values: tuple[Any, ...]) -> SettingsRow:
    auto_pip, skip_seconds, site_flags, retention_days, paused = values
    return SettingsRow(
        auto_pip=bool(auto_pip),
        skip_seconds=int(skip_seconds),
        site_flags=cast(SiteFlags, site_flags),
        history_retention_days=None if retention_days is None else int(retention_days),
        history_paused=bool(paused),
    )


# The join tells "no settings saved" (s.user_id IS NULL) from "no such user" (no row at all).
SELECT_SETTINGS = """
SELECT s.user_id IS NOT NULL, s.auto_pip, s.skip_seconds, s.site_flags,
       s.history_retention_days, s.history_paused
FROM users u LEFT JOIN settings s ON s.user_id = u.id
WHERE u.id = %s
"""


def select_settings(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> SettingsRow:
    """The user's settings, or the defaults if they never saved any.

    Args:
        conn: The connection.
        user_id: The user.

    Returns:
        The stored settings, or :data:`DEFAULT_SETTINGS`.

    Raises:
        UserGone: There is no such user.
    """
    found = conn.execute(SELECT_SETTINGS, (user_id,)).fetchone()
    if found is None:
        raise UserGone(str(user_id))
    if not found[0]:
        return DEFAULT_SETTINGS
    return _row(found[1:])


INSERT_DEFAULT_SETTINGS = """
INSERT INTO settings (user_id) VALUES (%s) ON CONFLICT (user_id) DO NOTHING
"""

SELECT_SETTINGS_FOR_UPDATE = """
SELECT auto_pip, skip_seconds, site_flags, history_retention_days, history_paused
FROM settings WHERE user_id = %s FOR UPDATE
"""


def lock_settings(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> SettingsRow:
    """Lock the user's settings row until the transaction ends and return it.

    Creates the row with the defaults first if there is none (undone if the transaction rolls
    back). See the module docstring for why this is race-free.

    Args:
        conn: The connection (inside the caller's transaction).
        user_id: The user.

    Returns:
        The current settings (the defaults if none were saved).

    Raises:
        UserGone: There is no such user (the insert violates the foreign key).
    """
    try:
        conn.execute(INSERT_DEFAULT_SETTINGS, (user_id,))
    except pg_errors.ForeignKeyViolation as exc:
        raise UserGone(str(user_id)) from exc
    found = conn.execute(SELECT_SETTINGS_FOR_UPDATE, (user_id,)).fetchone()
    if found is None:  # deleted between the two statements (cascade from users)
        raise UserGone(str(user_id))
    return _row(found)


UPSERT_SETTINGS = """
INSERT INTO settings (
    user_id, auto_pip, skip_seconds, site_flags, history_retention_days, history_paused,
    updated_at
)
VALUES (%s, %s, %s, %s, %s, %s, now())
ON CONFLICT (user_id) DO UPDATE SET
    auto_pip = EXCLUDED.auto_pip,
    skip_seconds = EXCLUDED.skip_seconds,
    site_flags = EXCLUDED.site_flags,
    history_retention_days = EXCLUDED.history_retention_days,
    history_paused = EXCLUDED.history_paused,
    updated_at = now()
"""


def upsert_settings(
    conn: psycopg.Connection[Any], user_id: uuid.UUID, settings: SettingsRow
) -> None:
    """Store the user's whole settings document (``updated_at`` becomes now).

    Args:
        conn: The connection (inside the caller's transaction).
        user_id: The user.
        settings: The new settings, already validated.

    Raises:
        UserGone: There is no such user.
        psycopg.errors.CheckViolation: ``skip_seconds`` out of 1..300, or a retention not
            in :data:`HISTORY_RETENTION_DAYS` (the HTTP layer validates first; the
            constraints are a backstop).
    """
    flags = {host: dict(values) for host, values in settings.site_flags.items()}
    try:
        conn.execute(
            UPSERT_SETTINGS,
            (
                user_id,
                settings.auto_pip,
                settings.skip_seconds,
                Jsonb(flags),
                settings.history_retention_days,
                settings.history_paused,
            ),
        )
    except pg_errors.ForeignKeyViolation as exc:
        raise UserGone(str(user_id)) from exc
