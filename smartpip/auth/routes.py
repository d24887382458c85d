"""Sign-in endpoints: Google OIDC exchanged for our own tokens, refresh rotation, logout.

Every route here is limited per client address (``SMARTPIP_RATE_LIMIT_AUTH``). Failures:
400 ``invalid_request`` for malformed bodies, 401 ``unauthorized`` for any verification
failure (the detail names the check, never a token), 503 ``service_unavailable`` with
``Retry-After`` when the issuer cannot be reached and nothing cached serves, and 503
``sign_in_misconfigured`` (not retryable, no ``Retry-After``) when the issuer refuses our own
client credentials: an operator must fix the configuration, so the client should stop retrying
and tell the user sign-in is unavailable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

import attrs
from quart import Blueprint, request

from smartpip.auth.nonces import NonceRejected, Nonces
from smartpip.auth.oidc import OidcClient, OidcMisconfigured, OidcRejected, OidcUnavailable
from smartpip.auth.sessions import IssuedTokens, SessionRejected, Sessions
from smartpip.http.bodies import bounded, matches, structure
from smartpip.http.guards import Guards
from smartpip.http.jsonbody import read_json
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims

__all__ = ["auth_blueprint"]

# RFC 7636 4.1: 43-128 characters of the unreserved set.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# Why these bounds: Google's codes are ~75 characters and ID tokens ~1-2 KB; the limits only
# keep absurd input away from the upstream call.
MAX_CODE = 2048
MAX_ID_TOKEN = 8192
MAX_NONCE = 200
MAX_REFRESH_TOKEN = 256
OIDC_RETRY_AFTER = "5"
MISCONFIGURED = "sign_in_misconfigured"


@attrs.frozen
class CodeCallback:
    """``{code, codeVerifier, redirectUri, nonce}``: authorization code with PKCE."""

    code: str = attrs.field(validator=bounded(MAX_CODE))
    code_verifier: str = attrs.field(
        validator=matches(_VERIFIER, "must be 43 to 128 characters of [A-Za-z0-9._~-]")
    )
    redirect_uri: str = attrs.field(validator=bounded(MAX_CODE))
    nonce: str = attrs.field(validator=bounded(MAX_NONCE))


@attrs.frozen
class IdTokenCallback:
    """``{idToken, nonce}``: an ID token the extension obtained directly."""

    id_token: str = attrs.field(validator=bounded(MAX_ID_TOKEN))
    nonce: str = attrs.field(validator=bounded(MAX_NONCE))


@attrs.frozen
class RefreshBody:
    """``{refreshToken}``."""

    refresh_token: str = attrs.field(validator=bounded(MAX_REFRESH_TOKEN))


def _tokens_body(issued: IssuedTokens) -> dict[str, object]:
    return {
        "accessToken": issued.access_token,
        "tokenType": "Bearer",
        "expiresIn": issued.expires_in,
        "refreshToken": issued.refresh_token,
        "refreshExpiresIn": issued.refresh_expires_in,
    }


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="smartpip"'})


def auth_blueprint(
    sessions: Sessions,
    nonces: Nonces,
    oidc: OidcClient | None,
    guards: Guards,
    *,
    limit: Policy,
    redirect_uris: Iterable[str],
) -> Blueprint:
    """``/v1/auth/*``.

    Args:
        sessions: Refresh-token families and our access tokens.
        nonces: The single-use sign-in nonces.
        oidc: The OpenID provider; None when sign-in is not configured (then 404).
        guards: Bearer authentication and rate limits.
        limit: The per-address limit of every route here.
        redirect_uris: The redirect URIs the extension may use.
    """
    bp = Blueprint("auth", __name__, url_prefix="/v1/auth")
    limited = guards.limited(limit)
    allowed_redirects = frozenset(redirect_uris)

    def provider() -> OidcClient:
        if oidc is None:
            raise ApiError(404, "sign-in is not configured on this server")
        return oidc

    @bp.post("/oidc/start")
    @limited
    async def start() -> dict[str, object]:
        provider()
        login = nonces.start()
        return {"state": login.state, "nonce": login.nonce, "expiresIn": login.expires_in}

    @bp.post("/oidc/callback")
    @limited
    async def callback() -> dict[str, object]:
        client = provider()
        data = await read_json(request)
        if not isinstance(data, dict) or ("code" in data) == ("idToken" in data):
            raise ApiError(
                400, "send either {code, codeVerifier, redirectUri, nonce} or {idToken, nonce}"
            )
        body: CodeCallback | IdTokenCallback
        if "code" in data:
            body = structure(data, CodeCallback)
            if body.redirect_uri not in allowed_redirects:
                raise ApiError(400, "redirectUri is not an allowed redirect URI")
        else:
            body = structure(data, IdTokenCallback)
        try:
            nonces.check(body.nonce)  # cheap and local: before any upstream call
            if isinstance(body, CodeCallback):
                id_token = await client.exchange_code(
                    code=body.code,
                    code_verifier=body.code_verifier,
                    redirect_uri=body.redirect_uri,
                )
                method = "code"
            else:
                id_token, method = body.id_token, "id_token"
            identity = await client.verify_id_token(id_token)
            if identity.nonce != body.nonce:
                raise _unauthorized("id token nonce does not match")
            await nonces.consume(body.nonce)
        except (NonceRejected, OidcRejected) as error:
            raise _unauthorized(str(error)) from None
        except OidcMisconfigured:  # logged (as a warning, without the secret) by the client
            raise ApiError(
                503,
                "the sign-in provider refused this server's client credentials; an operator "
                "must fix the server's sign-in configuration",
                code=MISCONFIGURED,
                retryable=False,
            ) from None
        except OidcUnavailable:
            raise ApiError(
                503,
                "the sign-in provider cannot be reached; retry shortly",
                headers={"Retry-After": OIDC_RETRY_AFTER},
            ) from None
        issued = await sessions.sign_in(identity.issuer, identity.subject, method=method)
        return _tokens_body(issued)

    @bp.get("/session")
    @guards.user()
    async def session(user: AccessClaims) -> dict[str, object]:
        # What the presented access token says, as checked by the server: lets the extension
        # decide to refresh without decoding tokens itself. No database, no Redis.
        return {
            "userId": str(user.user_id),
            "expiresAt": datetime.fromtimestamp(user.expires_at, UTC).isoformat(),
        }

    @bp.post("/refresh")
    @limited
    async def refresh() -> dict[str, object]:
        body = structure(await read_json(request), RefreshBody)
        try:
            issued = await sessions.refresh(body.refresh_token)
        except SessionRejected as error:
            raise _unauthorized(f"refresh token {error}") from None
        return _tokens_body(issued)

    @bp.post("/logout")
    @limited
    async def logout() -> tuple[str, int]:
        body = structure(await read_json(request), RefreshBody)
        await sessions.logout(body.refresh_token)
        return "", 204

    return bp
