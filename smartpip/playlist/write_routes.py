"""``POST /v1/youtube/playlist``: add a video to the signed-in user's YouTube playlist.

Body ``{videoId, playlistId?}``; optional header ``Idempotency-Key``. Signed-in users only,
limited by ``SMARTPIP_RATE_LIMIT_WRITES``. 200 ``{playlistId, videoId, itemId,
playlistCreated, alreadyAdded}`` (a replay by ``Idempotency-Key`` also carries
``Idempotency-Replayed: true``).

Failures (``docs/playlist.md#adding-a-video``): 400 ``invalid_request`` (a bad
``Idempotency-Key``); 409 ``playlist_not_connected`` (ask the user for consent; ``reason``),
``conflict`` (another write for this user in progress) and ``playlist_full``; 422
``validation_failed``, ``video_not_found``, ``playlist_not_found``, ``idempotency_key_reused``;
403 ``playlist_forbidden``; 429 ``playlist_daily_limit`` (the user's writes today); 502
``upstream_error``; 503 ``playlist_unavailable`` with ``Retry-After`` (not configured, the
playlists' budget or the day's quota spent, Redis or Google unavailable).
"""

from __future__ import annotations

from quart import Blueprint, request

from smartpip.http.bodies import structure
from smartpip.http.guards import Guards, account_gone
from smartpip.http.jsonbody import read_json
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims
from smartpip.playlist.budget import BudgetRefused
from smartpip.playlist.errors import (
    KeyReused,
    NotConnectedError,
    PlaylistFull,
    PlaylistGone,
    PlaylistRefused,
    VideoGone,
    WriteBusy,
    WriteFailed,
    WriteUnavailable,
)
from smartpip.playlist.model import IDEMPOTENCY_KEY, AddBody
from smartpip.playlist.write import PlaylistWriter
from store.playlists import PlaylistOwnerMissing

__all__ = ["playlist_write_blueprint"]

# Retry-After of the "not configured" 503: configuration changes need a redeploy.
_DISABLED_RETRY_AFTER = 3600
# Retry-After of a write refused because another one for the user is in progress.
_BUSY_RETRY_AFTER = 1

_CONSENT = {
    "not_connected": "the user has not connected YouTube: ask for consent",
    "consent_revoked": "Google revoked the user's consent: ask for consent again",
    "consent_required": "YouTube refused the user's grant: ask for consent again",
}


def _unavailable(detail: str, retry_after: int, **extra: object) -> ApiError:
    return ApiError(
        503,
        detail,
        code="playlist_unavailable",
        headers={"Retry-After": str(retry_after)},
        extra=extra,
    )


def playlist_disabled() -> ApiError:
    """The answer of every playlist route while the feature is off on this deployment
    (``SMARTPIP_PLAYLIST=off``, no sign-in or no token keys; ``/v1/status`` says ``disabled``):
    503 ``playlist_unavailable``, as suggest answers when it is not configured."""
    return _unavailable("playlists are not configured on this deployment", _DISABLED_RETRY_AFTER)


def _refused(refusal: BudgetRefused, user_limit: int) -> ApiError:
    resets_at = refusal.resets_at.isoformat().replace("+00:00", "Z")
    if refusal.reason == "user_limit":
        # The per-user cap is a rate limit of its own: its policy in the RateLimit headers.
        return ApiError(
            429,
            "this user's playlist writes for today are spent",
            code="playlist_daily_limit",
            headers={
                "Retry-After": str(refusal.retry_after),
                "RateLimit-Policy": f'"playlist-daily";q={user_limit};w=86400',
                "RateLimit": f'"playlist-daily";r=0;t={refusal.retry_after}',
            },
            extra={"resetsAt": resets_at},
        )
    detail = (
        "today's YouTube quota for playlist writes is spent"
        if refusal.reason == "budget"
        else "today's YouTube quota is spent"
    )
    return _unavailable(detail, refusal.retry_after, reason=refusal.reason, resetsAt=resets_at)


def _field(status: int, code: str, field: str, message: str) -> ApiError:
    return ApiError(
        status, f"{field}: {message}", code=code, errors=[{"field": field, "message": message}]
    )


def _problem(error: WriteFailed) -> ApiError:
    """The problem answering a write's domain error."""
    if isinstance(error, NotConnectedError):
        return ApiError(
            409,
            _CONSENT.get(error.reason, _CONSENT["consent_required"]),
            code="playlist_not_connected",
            retryable=False,
            extra={"reason": error.reason},
        )
    if isinstance(error, WriteBusy):
        return ApiError(
            409,
            "another playlist write for this user is in progress",
            headers={"Retry-After": str(_BUSY_RETRY_AFTER)},
            retryable=True,
        )
    if isinstance(error, KeyReused):
        return _field(
            422,
            "idempotency_key_reused",
            "Idempotency-Key",
            "already used for a different request",
        )
    if isinstance(error, PlaylistFull):
        return ApiError(409, "the playlist is full (YouTube's limit)", code="playlist_full")
    if isinstance(error, VideoGone):
        return _field(422, "video_not_found", "videoId", "YouTube has no such video")
    if isinstance(error, PlaylistGone):
        return _field(422, "playlist_not_found", "playlistId", "YouTube has no such playlist")
    if isinstance(error, PlaylistRefused):
        return ApiError(
            403, "YouTube does not let this user add to that playlist", code="playlist_forbidden"
        )
    if isinstance(error, WriteUnavailable):
        details = {
            "redis": "playlist writes are unavailable for a moment",
            "google": "Google's sign-in service is unavailable",
            "rate_limited": "YouTube asks us to slow down",
        }
        return _unavailable(details.get(error.reason, "unavailable"), error.retry_after)
    return ApiError(502, "YouTube answered unusably")


def _idempotency_key() -> str | None:
    values = request.headers.getlist("Idempotency-Key")
    if not values:
        return None
    if len(values) > 1 or not IDEMPOTENCY_KEY.fullmatch(values[0]):
        message = "give it once: 8 to 128 characters of A-Z a-z 0-9 _ . : -"
        raise ApiError(
            400,
            f"Idempotency-Key: {message}",
            errors=[{"field": "Idempotency-Key", "message": message}],
        )
    return values[0]


def playlist_write_blueprint(
    writer: PlaylistWriter | None, guards: Guards, *, limit: Policy
) -> Blueprint:
    """``POST /v1/youtube/playlist``; 503 ``playlist_unavailable`` when not configured.

    Args:
        writer: The write service; None when the playlist feature is off.
        guards: Bearer authentication and rate limits.
        limit: The per-user limit (``SMARTPIP_RATE_LIMIT_WRITES``).
    """
    bp = Blueprint("playlist_write", __name__, url_prefix="/v1/youtube")

    @bp.post("/playlist")
    @guards.user(limit=limit)
    async def add_video(user: AccessClaims) -> tuple[dict[str, object], int, dict[str, str]]:
        # Validated first: a malformed request is the client's to fix, whatever is configured.
        key = _idempotency_key()
        body = structure(await read_json(request), AddBody, status=422)
        if writer is None:
            raise playlist_disabled()
        try:
            answer = await writer.add(user.user_id, body, key)
        except BudgetRefused as refusal:
            raise _refused(refusal, writer.budget.settings.user_daily_limit) from None
        except WriteFailed as error:
            raise _problem(error) from None
        except PlaylistOwnerMissing:
            raise account_gone() from None
        headers = {"Cache-Control": "no-store"}
        if answer.replayed:
            headers["Idempotency-Replayed"] = "true"
        return answer.body, 200, headers

    return bp
