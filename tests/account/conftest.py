"""Fixtures for the account tests: apps sharing keys and Redis, users with data in every table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import psycopg
import pytest
from psycopg.types.json import Jsonb

from smartpip.auth.sessions import IssuedTokens
from tests.app.conftest import AppFactory, RunningApp, app_factory

__all__ = ["ISSUER", "KEY", "Seeded", "app_factory", "bearer", "seed_user", "user_rows"]

KEY = "k1:" + "a" * 40
ISSUER = "https://accounts.example"


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[RunningApp]:
    """One app instance with fixed signing keys (a second one can verify its tokens)."""
    async with app_factory(jwt_keys=KEY) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


@attrs.frozen
class Seeded:
    """A user with data everywhere, and the tokens of their sessions."""

    user_id: uuid.UUID
    sub: str
    access_token: str
    refresh_token: str
    rotated_refresh_token: str


INSERT_HISTORY = """
INSERT INTO video_history (user_id, provider, video_id, title, url, watched_at)
VALUES (%s, 'youtube', %s, %s, %s, %s)
"""
INSERT_SETTINGS = """
INSERT INTO settings (user_id, auto_pip, skip_seconds, site_flags, history_retention_days,
    history_paused)
VALUES (%s, true, %s, %s, 30, true)
"""


# A connected YouTube grant; the sealed token is filler (these apps run without the keyring).
INSERT_OAUTH_ACCOUNT = """
INSERT INTO oauth_accounts (user_id, subject, key_id, token_sealed, scopes)
VALUES (%s, %s, 't1', %s, ARRAY['openid', 'https://www.googleapis.com/auth/youtube'])
"""


def _seed_rows(conn: psycopg.Connection[Any], user_id: uuid.UUID, tag: str) -> None:
    base = datetime(2024, 5, 1, 12, tzinfo=UTC)
    for i in range(3):
        video_id = f"{tag[:6]}{i:05d}".ljust(11, "x")
        conn.execute(
            INSERT_HISTORY,
            (
                user_id,
                video_id,
                f"{tag} title {i}",
                f"https://www.youtube.com/watch?v={video_id}",
                base + timedelta(minutes=i),
            ),
        )
    conn.execute(INSERT_SETTINGS, (user_id, 17, Jsonb({f"{tag}.example": {"autoPip": True}})))
    conn.execute(
        "INSERT INTO audit_logs (user_id, event, meta) VALUES (%s, 'test_event', %s)",
        (user_id, Jsonb({"reason": f"{tag}-reason"})),
    )
    conn.execute(INSERT_OAUTH_ACCOUNT, (user_id, f"sub-{tag}", bytes(40)))
    conn.execute(
        "INSERT INTO youtube_playlists (user_id, playlist_id, last_playlist_id, last_video_id,"
        " last_item_id, last_added_at) VALUES (%s, %s, %s, %s, 'item-1', %s)",
        (user_id, f"PL{tag}", f"PL{tag}", "dQw4w9WgXcQ", base),
    )


async def seed_user(app: RunningApp, tag: str) -> Seeded:
    """Sign ``tag`` in twice (two session families, one rotated) and give them history,
    settings, an extra audit event, a YouTube grant and a remembered playlist."""
    sub = f"sub-{tag}"
    first: IssuedTokens = await app.resources.sessions.sign_in(ISSUER, sub, method="code")
    rotated = await app.resources.sessions.refresh(first.refresh_token)
    second = await app.resources.sessions.sign_in(ISSUER, sub, method="id_token")
    assert first.user_id == second.user_id
    await app.resources.db.run(_seed_rows, first.user_id, tag)
    return Seeded(
        user_id=first.user_id,
        sub=sub,
        access_token=second.access_token,
        refresh_token=second.refresh_token,
        rotated_refresh_token=rotated.refresh_token,
    )


#: Every table holding rows of a user, and the column naming the user.
USER_TABLES = {
    "users": "id",
    "video_history": "user_id",
    "settings": "user_id",
    "sessions": "user_id",
    "audit_logs": "user_id",
    "oauth_accounts": "user_id",
    "youtube_playlists": "user_id",
}


def user_rows(pg_url: str, user_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row of the user in every table, as Postgres' text form (byte-exact), sorted."""
    with psycopg.connect(pg_url) as conn:
        return {
            table: [
                row[0]
                for row in conn.execute(
                    f"SELECT t::text FROM {table} t WHERE {column} = %s ORDER BY 1",
                    (user_id,),
                ).fetchall()
            ]
            for table, column in USER_TABLES.items()
        }
