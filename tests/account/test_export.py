"""``GET /v1/me/export``: exactly what is stored about the user, nothing of anybody else."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import psycopg

from tests.account.conftest import ISSUER, Seeded, bearer, seed_user
from tests.app.conftest import RunningApp


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def stored(pg_url: str, user_id: uuid.UUID) -> dict[str, Any]:
    """What the database holds for the user, in the export's shape (timestamps as datetimes)."""
    with psycopg.connect(pg_url) as conn:
        account = conn.execute(
            "SELECT id, oidc_iss, oidc_sub, created_at FROM users WHERE id = %s", (user_id,)
        ).fetchone()
        settings = conn.execute(
            "SELECT auto_pip, skip_seconds, site_flags, history_retention_days, history_paused,"
            " updated_at FROM settings WHERE user_id = %s",
            (user_id,),
        ).fetchone()
        history = conn.execute(
            "SELECT provider, video_id, title, url, watched_at FROM video_history"
            " WHERE user_id = %s ORDER BY watched_at DESC",
            (user_id,),
        ).fetchall()
        sessions = conn.execute(
            "SELECT id, family_id, created_at, last_used_at, expires_at, absolute_expires_at,"
            " used_at, revoked_at FROM sessions WHERE user_id = %s ORDER BY created_at, id",
            (user_id,),
        ).fetchall()
        audit = conn.execute(
            "SELECT event, meta, created_at FROM audit_logs WHERE user_id = %s ORDER BY id",
            (user_id,),
        ).fetchall()
        youtube = conn.execute(
            "SELECT scopes, connected_at, updated_at FROM oauth_accounts WHERE user_id = %s",
            (user_id,),
        ).fetchone()
        playlist = conn.execute(
            "SELECT playlist_id, last_playlist_id, last_video_id, last_added_at, created_at,"
            " updated_at FROM youtube_playlists WHERE user_id = %s",
            (user_id,),
        ).fetchone()
    assert account is not None and settings is not None
    return {
        "account": {
            "id": str(account[0]),
            "issuer": account[1],
            "subject": account[2],
            "createdAt": account[3],
        },
        "settings": {
            "autoPip": settings[0],
            "skipSeconds": settings[1],
            "siteFlags": settings[2],
            "historyRetentionDays": settings[3],
            "historyPaused": settings[4],
            "updatedAt": settings[5],
        },
        "history": [
            dict(zip(("provider", "videoId", "title", "url", "watchedAt"), row, strict=True))
            for row in history
        ],
        "sessions": [
            {
                "id": str(row[0]),
                "familyId": str(row[1]),
                "createdAt": row[2],
                "lastUsedAt": row[3],
                "expiresAt": row[4],
                "absoluteExpiresAt": row[5],
                "usedAt": row[6],
                "revokedAt": row[7],
            }
            for row in sessions
        ],
        "youtubeConnection": None
        if youtube is None
        else {"scopes": sorted(youtube[0]), "connectedAt": youtube[1], "updatedAt": youtube[2]},
        "youtubePlaylist": None
        if playlist is None
        else dict(zip(_PLAYLIST_FIELDS, playlist, strict=True)),
        "auditEvents": [{"event": e, "meta": m, "createdAt": c} for e, m, c in audit],
    }


_PLAYLIST_FIELDS = (
    "playlistId",
    "lastPlaylistId",
    "lastVideoId",
    "lastAddedAt",
    "createdAt",
    "updatedAt",
)
_TIME_FIELDS = {
    "createdAt",
    "updatedAt",
    "watchedAt",
    "lastUsedAt",
    "expiresAt",
    "absoluteExpiresAt",
    "usedAt",
    "revokedAt",
    "connectedAt",
    "lastAddedAt",
}


def parsed(body: Any) -> Any:
    """The export with every timestamp parsed (compared as instants, not as strings)."""
    if isinstance(body, list):
        return [parsed(item) for item in body]
    if isinstance(body, dict):
        return {
            k: _when(v) if k in _TIME_FIELDS and (v is None or isinstance(v, str)) else parsed(v)
            for k, v in body.items()
        }
    return body


async def export(app: RunningApp, user: Seeded) -> Any:
    response = await app.client.get("/v1/me/export", headers=bearer(user.access_token))
    assert response.status_code == 200, response.text
    return response


async def test_export_is_exactly_what_is_stored(app: RunningApp, pg_url: str) -> None:
    alice = await seed_user(app, "alice")
    await seed_user(app, "bob")
    response = await export(app, alice)
    assert response.headers["content-disposition"] == (
        'attachment; filename="smartpip-export.json"'
    )
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["ratelimit-policy"].startswith('"user";')
    body = response.json()
    assert parsed(body) == stored(pg_url, alice.user_id)
    # The seeding really did fill every part (so the equality above means something).
    assert body["account"]["issuer"] == ISSUER and body["account"]["subject"] == "sub-alice"
    assert len(body["history"]) == 3 and body["history"][0]["title"] == "alice title 2"
    assert body["settings"]["historyRetentionDays"] == 30
    assert body["settings"]["historyPaused"] is True
    assert len(body["sessions"]) == 3  # two sign-ins, one rotation
    assert sum(s["usedAt"] is not None for s in body["sessions"]) == 1
    assert [e["event"] for e in body["auditEvents"]] == ["sign_in", "sign_in", "test_event"]
    # The YouTube connection: scopes and times, never the (sealed) token or its key.
    assert body["youtubeConnection"]["scopes"] == [
        "https://www.googleapis.com/auth/youtube",
        "openid",
    ]
    assert set(body["youtubeConnection"]) == {"scopes", "connectedAt", "updatedAt"}
    assert body["youtubePlaylist"]["playlistId"] == "PLalice"
    assert body["youtubePlaylist"]["lastVideoId"] == "dQw4w9WgXcQ"


async def test_export_holds_nothing_of_another_user(app: RunningApp, pg_url: str) -> None:
    alice = await seed_user(app, "alice")
    bob = await seed_user(app, "bob")
    text = (await export(app, alice)).text
    bob_data = stored(pg_url, bob.user_id)
    assert "bob" not in text
    assert str(bob.user_id) not in text
    for session in bob_data["sessions"]:
        assert session["id"] not in text and session["familyId"] not in text


async def test_export_has_no_token_or_token_hash(app: RunningApp) -> None:
    alice = await seed_user(app, "alice")
    text = (await export(app, alice)).text
    for token in (alice.refresh_token, alice.rotated_refresh_token):
        digest = hashlib.sha256(token.encode()).digest()
        assert token not in text
        assert digest.hex() not in text
        assert "\\\\x" + digest.hex() not in text
    assert alice.access_token not in text
    assert alice.access_token.split(".")[-1] not in text
    for session in json.loads(text)["sessions"]:
        assert "tokenHash" not in session and "token_hash" not in session


async def test_export_of_a_user_without_settings_or_history(app: RunningApp) -> None:
    issued = await app.resources.sessions.sign_in(ISSUER, "fresh", method="code")
    response = await app.client.get("/v1/me/export", headers=bearer(issued.access_token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["settings"] is None and body["history"] == []
    assert body["youtubeConnection"] is None and body["youtubePlaylist"] is None
    assert [e["event"] for e in body["auditEvents"]] == ["sign_in"]
    assert body["auditEvents"][0]["meta"]["new_user"] is True


async def test_export_requires_a_bearer_token(app: RunningApp) -> None:
    response = await app.client.get("/v1/me/export")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
