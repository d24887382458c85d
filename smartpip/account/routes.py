"""The signed-in user's account: ``GET /v1/me``, ``GET /v1/me/export``, ``DELETE /v1/me``.

A deleted user's access tokens are refused at once by every route behind ``guards.user``
(:mod:`smartpip.http.revocation`). Should one still get through (Redis was down when the account
was deleted, and the request reached another replica), the account routes answer 401
``invalid_token`` rather than 404: the token names a user that no longer exists, which for the
client means "sign in again", exactly like a revoked token.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import trio
from quart import Blueprint, Response, jsonify

from smartpip.http.guards import Guards, account_gone
from smartpip.http.ratelimit import Policy
from smartpip.http.revocation import TokenRevocations
from smartpip.http.tokens import AccessClaims
from smartpip.logs import get_logger
from store.account import UserExport, delete_account, select_user_export
from store.postgres import Database
from store.users import select_user

__all__ = ["EXPORT_FILENAME", "account_blueprint", "delete_user", "export_body"]

log = get_logger(__name__)

EXPORT_FILENAME = "smartpip-export.json"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def export_body(export: UserExport) -> dict[str, Any]:
    """The export document (camelCase JSON): everything held, without any token hash."""
    account, settings, youtube = export.account, export.settings, export.youtube
    playlist = export.playlist
    return {
        "account": {
            "id": str(account.id),
            "createdAt": account.created_at.isoformat(),
            "issuer": account.oidc_iss,
            "subject": account.oidc_sub,
        },
        "settings": None
        if settings is None
        else {
            "autoPip": settings.auto_pip,
            "skipSeconds": settings.skip_seconds,
            "siteFlags": settings.site_flags,
            "historyRetentionDays": settings.history_retention_days,
            "historyPaused": settings.history_paused,
            "updatedAt": settings.updated_at.isoformat(),
        },
        "history": [
            {
                "provider": item.provider,
                "videoId": item.video_id,
                "title": item.title,
                "url": item.url,
                "watchedAt": item.watched_at.isoformat(),
            }
            for item in export.history
        ],
        # Metadata only: token_hash is deliberately left out.
        "sessions": [
            {
                "id": str(session.id),
                "familyId": str(session.family_id),
                "createdAt": session.created_at.isoformat(),
                "lastUsedAt": _iso(session.last_used_at),
                "expiresAt": session.expires_at.isoformat(),
                "absoluteExpiresAt": session.absolute_expires_at.isoformat(),
                "usedAt": _iso(session.used_at),
                "revokedAt": _iso(session.revoked_at),
            }
            for session in export.sessions
        ],
        # The YouTube connection (playlist): scopes and times, never the token.
        "youtubeConnection": None
        if youtube is None
        else {
            "scopes": sorted(youtube.scopes),
            "connectedAt": youtube.connected_at.isoformat(),
            "updatedAt": youtube.updated_at.isoformat(),
        },
        # The Smart PiP playlist remembered for the user (kept across a disconnect, so that a
        # reconnect adds to the same playlist) and the last video added.
        "youtubePlaylist": None
        if playlist is None
        else {
            "playlistId": playlist.playlist_id,
            "lastPlaylistId": playlist.last_playlist_id,
            "lastVideoId": playlist.last_video_id,
            "lastAddedAt": _iso(playlist.last_added_at),
            "createdAt": playlist.created_at.isoformat(),
            "updatedAt": playlist.updated_at.isoformat(),
        },
        "auditEvents": [
            {"event": event.event, "meta": event.meta, "createdAt": event.created_at.isoformat()}
            for event in export.audit
        ],
    }


BeforeDelete = Callable[[uuid.UUID], Awaitable[None]]
"""Called with the user's ID before the deletion's transaction (the playlist feature revokes
the user's Google grant there, bounded in time, never raising for Google)."""


async def delete_user(
    db: Database,
    revocations: TokenRevocations,
    user_id: uuid.UUID,
    *,
    before_delete: BeforeDelete | None = None,
) -> bool:
    """Erase a user's data (one transaction), then revoke their access tokens.

    ``before_delete`` runs first (the Google grant is revoked there); the transaction then
    deletes the grant's row with everything else, whatever Google answered.

    Shielded from cancellation (a client hanging up must not leave a committed deletion
    without its revocation); bounded by the database's query timeout plus Redis' timeouts.

    Returns:
        True if this call deleted the user; False if they were already gone (the revocation
        is written again all the same, so a retry after a lost response is harmless).

    Raises:
        DatabaseUnavailable: Postgres is not answering; nothing was revoked, and the deletion
            may or may not have committed (retrying is safe).
    """
    with trio.CancelScope(shield=True):
        if before_delete is not None:
            await before_delete(user_id)
        removed = await db.run(delete_account, user_id)
        shared = await revocations.revoke_user(user_id)
    if removed is not None:
        log.info(
            "account deleted",
            history=removed.history,
            settings=removed.settings,
            sessions=removed.sessions,
            audit=removed.audit,
            youtube=removed.oauth_accounts,
            revoked_everywhere=shared,
        )
    return removed is not None


def account_blueprint(
    db: Database,
    guards: Guards,
    *,
    reads: Policy,
    writes: Policy,
    before_delete: BeforeDelete | None = None,
) -> Blueprint:
    """``/v1/me``: who the bearer token belongs to, their data export, and erasure.

    Args:
        db: Where the account's rows are.
        guards: Bearer authentication and rate limits (and the revocation checker).
        reads: The per-user limit of the reads.
        writes: The per-user limit of the deletion.
        before_delete: Run before a deletion (the playlist feature revokes the Google grant).
    """
    bp = Blueprint("account", __name__, url_prefix="/v1")
    # The guards' own checker: every authenticated route refuses tokens of users deleted
    # here at once (and, through Redis, on the other replicas).
    revocations = guards.revocations

    @bp.get("/me")
    @guards.user(limit=reads)
    async def me(user: AccessClaims) -> dict[str, object]:
        row = await db.read(select_user, user.user_id)
        if row is None:
            raise account_gone()
        return {"id": str(row.id), "createdAt": row.created_at.isoformat()}

    @bp.get("/me/export")
    @guards.user(limit=reads)
    async def export(user: AccessClaims) -> Response:
        data = await db.run(select_user_export, user.user_id)
        if data is None:
            raise account_gone()
        response = jsonify(export_body(data))
        response.headers["Content-Disposition"] = f'attachment; filename="{EXPORT_FILENAME}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.delete("/me")
    @guards.user(limit=writes)
    async def delete_me(user: AccessClaims) -> tuple[str, int]:
        await delete_user(db, revocations, user.user_id, before_delete=before_delete)
        return "", 204

    return bp
