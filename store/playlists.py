"""The user's "Smart PiP" YouTube playlist and the last video added (``youtube_playlists``).

Query functions take a connection and never commit: the caller owns the transaction
(``Database.run``). No token is ever stored here.

Concurrency: the writes of one user are serialised by the write lock of
``store.playlist_writes`` (a YouTube call sits between the read and the write, so a row lock
would be held across the network); these statements are single upserts, race-free by
themselves.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row

__all__ = [
    "PlaylistExport",
    "PlaylistOwnerMissing",
    "PlaylistRow",
    "forget_playlist",
    "record_added",
    "save_playlist",
    "select_playlist",
    "select_playlist_export",
]


class PlaylistOwnerMissing(Exception):
    """The user has no row any more (the account was deleted while a token still lived)."""


@attrs.frozen
class PlaylistRow:
    """What is remembered for one user.

    Attributes:
        playlist_id: The Smart PiP playlist this service created, or None (not yet, or gone).
        last_playlist_id: The playlist the last video was added to.
        last_video_id: The last video added.
        last_item_id: The playlist item YouTube created for it.
    """

    playlist_id: str | None
    last_playlist_id: str | None
    last_video_id: str | None
    last_item_id: str | None


SELECT_PLAYLIST = """
SELECT playlist_id, last_playlist_id, last_video_id, last_item_id
FROM youtube_playlists WHERE user_id = %s
"""


def select_playlist(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> PlaylistRow | None:
    """The user's row, or None (never added a video)."""
    cursor = conn.cursor(row_factory=class_row(PlaylistRow))
    return cursor.execute(SELECT_PLAYLIST, (user_id,)).fetchone()


@attrs.frozen
class PlaylistExport:
    """The whole row, for the user's data export."""

    playlist_id: str | None
    last_playlist_id: str | None
    last_video_id: str | None
    last_added_at: datetime | None
    created_at: datetime
    updated_at: datetime


SELECT_PLAYLIST_EXPORT = """
SELECT playlist_id, last_playlist_id, last_video_id, last_added_at, created_at, updated_at
FROM youtube_playlists WHERE user_id = %s
"""


def select_playlist_export(
    conn: psycopg.Connection[Any], user_id: uuid.UUID
) -> PlaylistExport | None:
    """The user's row as exported, or None (never added a video)."""
    cursor = conn.cursor(row_factory=class_row(PlaylistExport))
    return cursor.execute(SELECT_PLAYLIST_EXPORT, (user_id,)).fetchone()


SAVE_PLAYLIST = """
INSERT INTO youtube_playlists (user_id, playlist_id) VALUES (%s, %s)
ON CONFLICT (user_id) DO UPDATE SET playlist_id = excluded.playlist_id, updated_at = now()
"""


def save_playlist(conn: psycopg.Connection[Any], user_id: uuid.UUID, playlist_id: str) -> None:
    """Remember the Smart PiP playlist just created for the user.

    Raises:
        PlaylistOwnerMissing: The user was deleted.
    """
    try:
        conn.execute(SAVE_PLAYLIST, (user_id, playlist_id))
    except pg_errors.ForeignKeyViolation:
        raise PlaylistOwnerMissing(str(user_id)) from None


FORGET_PLAYLIST = """
UPDATE youtube_playlists SET playlist_id = NULL, updated_at = now()
WHERE user_id = %s AND playlist_id = %s
"""


def forget_playlist(conn: psycopg.Connection[Any], user_id: uuid.UUID, playlist_id: str) -> None:
    """YouTube says the Smart PiP playlist ``playlist_id`` is gone: forget it (only if it is
    still the one remembered)."""
    conn.execute(FORGET_PLAYLIST, (user_id, playlist_id))


RECORD_ADDED = """
INSERT INTO youtube_playlists
    (user_id, last_playlist_id, last_video_id, last_item_id, last_added_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (user_id) DO UPDATE SET
    last_playlist_id = excluded.last_playlist_id,
    last_video_id = excluded.last_video_id,
    last_item_id = excluded.last_item_id,
    last_added_at = excluded.last_added_at,
    updated_at = now()
"""


def record_added(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    *,
    playlist_id: str,
    video_id: str,
    item_id: str,
) -> None:
    """Remember the video just added (the next add of the same video is not inserted again).

    Raises:
        PlaylistOwnerMissing: The user was deleted.
    """
    try:
        conn.execute(RECORD_ADDED, (user_id, playlist_id, video_id, item_id))
    except pg_errors.ForeignKeyViolation:
        raise PlaylistOwnerMissing(str(user_id)) from None
