"""Reading and writing a user's settings in Postgres, with ``If-Match`` checked under the lock.

Domain errors only, no HTTP (the route maps them to problems):

- :class:`PreconditionFailed`: the ``If-Match`` of a write lists neither ``*`` nor the ETag of
  the document stored now;
- :class:`~store.settings.UserGone`: the account was deleted while a token still lived;
- :class:`~smartpip.settings.model.InvalidSettings`: a PATCH merged past the limits.

Concurrency: a write is one transaction (``Database.run``) that locks the settings row first
(:func:`store.settings.lock_settings`, which also serialises a user's very first write), then
compares ``If-Match`` with the document stored *now*, then writes. So of two devices writing
with the same tag, exactly one wins and the other gets :class:`PreconditionFailed`; a refused
write rolls back, leaving not even the default row behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from smartpip.http.etags import if_match_allows
from smartpip.settings.model import (
    SettingsPatch,
    SettingsPut,
    canonical_document,
    merge,
    replaced,
)
from store.postgres import Database
from store.settings import SettingsRow, UserGone, lock_settings, select_settings, upsert_settings

__all__ = [
    "PreconditionFailed",
    "UserGone",
    "patch_settings",
    "read_settings",
    "replace_settings",
]


class PreconditionFailed(Exception):
    """The stored document's ETag is not in the write's ``If-Match`` (someone wrote since)."""


async def read_settings(db: Database, user_id: uuid.UUID) -> SettingsRow:
    """The user's settings, or the defaults if they never saved any.

    Raises:
        UserGone: The account was deleted.
    """
    return await db.read(select_settings, user_id)


async def replace_settings(
    db: Database, user_id: uuid.UUID, new: SettingsPut, *, if_match: str | None
) -> SettingsRow:
    """Store ``new`` (a validated PUT) in place of the user's settings.

    Args:
        db: Where the settings are.
        user_id: The user.
        new: The whole new document (history fields it did not send keep their stored
            values: :func:`~smartpip.settings.model.replaced`).
        if_match: The request's ``If-Match`` value; None writes unconditionally.

    Returns:
        The stored settings.

    Raises:
        PreconditionFailed: ``if_match`` does not match the stored document.
        UserGone: The account was deleted.
    """
    return await db.run(_write, user_id, if_match, lambda current: replaced(current, new))


async def patch_settings(
    db: Database, user_id: uuid.UUID, patch: SettingsPatch, *, if_match: str | None
) -> SettingsRow:
    """Merge ``patch`` (a validated PATCH) into the user's settings as stored now.

    Args:
        db: Where the settings are.
        user_id: The user.
        patch: The fields to change (:func:`~smartpip.settings.model.merge`).
        if_match: The request's ``If-Match`` value; None writes unconditionally.

    Returns:
        The stored settings after the merge.

    Raises:
        PreconditionFailed: ``if_match`` does not match the stored document.
        InvalidSettings: The merged document is past the limits (nothing is written).
        UserGone: The account was deleted.
    """
    return await db.run(_write, user_id, if_match, lambda current: merge(current, patch))


def _write(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    if_match: str | None,
    change: Callable[[SettingsRow], SettingsRow],
) -> SettingsRow:
    """Lock, check ``If-Match``, change and store, in the caller's transaction (a worker
    thread of ``Database.run``); raising rolls everything back."""
    current = lock_settings(conn, user_id)
    if not if_match_allows(if_match, canonical_document(current)):
        raise PreconditionFailed("If-Match does not match the stored settings")
    new = change(current)
    upsert_settings(conn, user_id, new)
    return new
