"""``/v1/youtube/connect/*`` and ``/v1/youtube/connection``: consent to the YouTube scope,
its status and its withdrawal (see :mod:`smartpip.playlist.connect`).

Failures: 400 ``invalid_request`` (malformed body, a redirect URI not on the allow-list),
403 ``consent_rejected`` / ``scope_not_granted`` / ``account_mismatch`` (the consent cannot be
used; start again), 503 ``playlist_unavailable`` when the feature is off, 503
``service_unavailable`` with ``Retry-After`` when Google cannot be reached. No answer ever
holds a Google token.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from quart import Blueprint, request

from smartpip.http.bodies import bounded, structure
from smartpip.http.guards import Guards
from smartpip.http.jsonbody import read_json
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims
from smartpip.playlist.connect import Connections, ConsentRejected
from smartpip.playlist.grants import GoogleUnavailable
from smartpip.playlist.write_routes import playlist_disabled
from store.oauth_accounts import ConnectionRow

__all__ = ["connection_body", "youtube_connect_blueprint"]

# Why these bounds: Google's codes are ~75 characters and our states ~60; redirect URIs as
# for sign-in. They only keep absurd input away from the upstream call.
MAX_CODE = 2048
MAX_STATE = 200
MAX_REDIRECT = 2048
GOOGLE_RETRY_AFTER = "5"


@attrs.frozen
class StartBody:
    """``{redirectUri}``."""

    redirect_uri: str = attrs.field(validator=bounded(MAX_REDIRECT))


@attrs.frozen
class CallbackBody:
    """``{code, state, redirectUri}``."""

    code: str = attrs.field(validator=bounded(MAX_CODE))
    state: str = attrs.field(validator=bounded(MAX_STATE))
    redirect_uri: str = attrs.field(validator=bounded(MAX_REDIRECT))


def connection_body(row: ConnectionRow | None) -> dict[str, object]:
    """The connection document: whether connected, with which scopes, since when."""
    if row is None:
        return {"connected": False, "scopes": [], "connectedAt": None, "updatedAt": None}
    return {
        "connected": True,
        "scopes": sorted(row.scopes),
        "connectedAt": row.connected_at.isoformat(),
        "updatedAt": row.updated_at.isoformat(),
    }


def _unavailable() -> ApiError:
    return ApiError(
        503,
        "Google cannot be reached; retry shortly",
        headers={"Retry-After": GOOGLE_RETRY_AFTER},
    )


def youtube_connect_blueprint(
    connections: Connections | None,
    guards: Guards,
    *,
    reads: Policy,
    writes: Policy,
    redirect_uris: Iterable[str],
) -> Blueprint:
    """The connect routes.

    Args:
        connections: The service; None when the playlist feature is off (then 503
            ``playlist_unavailable``, like the write).
        guards: Bearer authentication and rate limits.
        reads: The per-user limit of the status read.
        writes: The per-user limit of start, callback and disconnect.
        redirect_uris: The redirect URIs the extension may use (sign-in's allow-list).
    """
    bp = Blueprint("youtube_connect", __name__, url_prefix="/v1/youtube")
    allowed_redirects = frozenset(redirect_uris)

    def service() -> Connections:
        if connections is None:
            raise playlist_disabled()
        return connections

    def allowed(redirect_uri: str) -> str:
        if redirect_uri not in allowed_redirects:
            raise ApiError(400, "redirectUri is not an allowed redirect URI")
        return redirect_uri

    @bp.post("/connect/start")
    @guards.user(limit=writes)
    async def start(user: AccessClaims) -> dict[str, object]:
        connect = service()
        body = structure(await read_json(request), StartBody)
        try:
            started = await connect.start(user.user_id, allowed(body.redirect_uri))
        except GoogleUnavailable:
            raise _unavailable() from None
        return {
            "authorizationUrl": started.authorization_url,
            "state": started.state,
            "expiresIn": started.expires_in,
        }

    @bp.post("/connect/callback")
    @guards.user(limit=writes)
    async def callback(user: AccessClaims) -> dict[str, object]:
        connect = service()
        body = structure(await read_json(request), CallbackBody)
        try:
            row = await connect.finish(
                user.user_id,
                code=body.code,
                state=body.state,
                redirect_uri=allowed(body.redirect_uri),
            )
        except ConsentRejected as error:
            raise ApiError(403, str(error), code=error.code) from None
        except GoogleUnavailable:
            raise _unavailable() from None
        return connection_body(row)

    @bp.get("/connection")
    @guards.user(limit=reads)
    async def connection(user: AccessClaims) -> dict[str, object]:
        return connection_body(await service().connection(user.user_id))

    @bp.delete("/connection")
    @guards.user(limit=writes)
    async def disconnect(user: AccessClaims) -> tuple[str, int]:
        await service().disconnect(user.user_id)
        return "", 204

    return bp
