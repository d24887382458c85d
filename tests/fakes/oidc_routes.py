"""The fake OpenID provider's HTTP side: an ASGI app with Google's four routes and faults.

Served by :meth:`tests.fakes.oidc_provider.FakeOidcProvider.run`; the routes, the fault modes
and the provider attributes they read and count into are described in that module.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote_plus

import attrs
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from tests.fakes.asgi import serve_lifespan
from tests.fakes.jwt_keys import s256

if TYPE_CHECKING:
    from tests.fakes.oidc_provider import FakeOidcProvider

__all__ = ["Grant", "Mode", "OidcRoutes", "RefreshGrant"]

Mode = Literal["ok", "down", "slow", "malformed", "huge", "redirect"]
_Response = tuple[int, dict[str, str], bytes]

# Why 300 KiB: over smartpip.auth.oidc's 256 KiB limit on upstream documents.
_HUGE_PADDING = 300 * 1024


@attrs.frozen
class Grant:
    """What the user consented to at the authorization endpoint, redeemable once."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    sub: str
    expires_at: float
    scopes: tuple[str, ...] = ("openid",)
    offline: bool = False


@attrs.frozen
class RefreshGrant:
    """A refresh token the provider issued (``access_type=offline``): whose, for what."""

    sub: str
    scopes: tuple[str, ...]


def _json(status: int, body: object, **headers: str) -> _Response:
    return status, {"content-type": "application/json", **headers}, json.dumps(body).encode()


def _oauth_error(error: str, description: str, status: int = 400) -> _Response:
    return _json(status, {"error": error, "error_description": description})


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from ``Authorization: Basic`` (RFC 6749 2.3.1)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    user, sep, password = decoded.partition(":")
    return (unquote_plus(user), unquote_plus(password)) if sep else None


class OidcRoutes:
    """The ASGI app of one :class:`FakeOidcProvider`, whose settings it reads per request.

    Attributes:
        grants: Outstanding authorization codes; the token endpoint pops each on first use.
    """

    def __init__(self, provider: FakeOidcProvider) -> None:
        self._provider = provider
        self.grants: dict[str, Grant] = {}

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            if event["type"] != "http.request":
                return  # the client went away
            body += event["body"]
            if not event.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, extra, payload = await self._handle(scope["method"], scope["path"], headers, body)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        provider = self._provider
        counters = {
            ("GET", "/.well-known/openid-configuration"): "discovery_requests",
            ("GET", "/jwks"): "jwks_requests",
            ("POST", "/token"): "token_requests",
            ("POST", "/revoke"): "revoke_requests",
        }
        counter = counters.get((method, path))
        if counter is None:
            return _json(404, {"error": "not_found"})
        setattr(provider, counter, getattr(provider, counter) + 1)
        mode = provider.jwks_mode if path == "/jwks" and provider.mode == "ok" else provider.mode
        if mode == "down":
            return _json(503, {"error": "temporarily_unavailable"})
        if mode == "malformed":
            return 200, {"content-type": "application/json"}, b'{"keys": [ not json'
        if mode == "huge":
            return _json(200, {"keys": [], "padding": "x" * _HUGE_PADDING})
        if mode == "redirect":
            return 302, {"location": provider.issuer + path}, b""
        if mode == "slow":
            # The injected fault (a slow provider), not a wait for a side effect.
            await trio.sleep(provider.slow_seconds)
        if path == "/jwks":
            return 200, self._cache_headers(provider.jwks_max_age), provider.jwks_text()
        if path == "/token":
            return self._token(headers, body)
        if path == "/revoke":
            token = dict(parse_qsl(body.decode("utf-8", "replace"))).get("token", "")
            if not token or token in provider.revoked:  # Google's answer for a dead token
                return _oauth_error("invalid_token", "Token expired or revoked")
            provider.revoked.append(token)
            provider.refresh_grants.pop(token, None)  # revoking a grant ends its refresh token
            return 200, {}, b""
        return _json(200, self._discovery(), **self._cache_headers(provider.discovery_max_age))

    @staticmethod
    def _cache_headers(max_age: int | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if max_age is not None:
            headers["cache-control"] = f"public, max-age={max_age}, must-revalidate, no-transform"
        return headers

    def _discovery(self) -> dict[str, Any]:
        base = self._provider.issuer
        document: dict[str, Any] = {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "revocation_endpoint": f"{base}/revoke",
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
        }
        for name, value in self._provider.discovery_overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    def _token(self, headers: dict[str, str], body: bytes) -> _Response:
        provider = self._provider
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        basic = _basic_credentials(headers.get("authorization"))
        provider.token_auth.append(
            "basic" if basic else "form" if "client_secret" in form else "none"
        )
        credentials = basic or (form.get("client_id"), form.get("client_secret"))
        if credentials != (provider.client_id, provider.client_secret):
            return _oauth_error("invalid_client", "Unauthorized", status=401)
        if not provider.client_may_use_code_grant:
            return _oauth_error(
                "unauthorized_client", "Unauthorized client for the authorization_code grant"
            )
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _oauth_error("invalid_request", "Body must be form-encoded")
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        code, verifier = form.get("code"), form.get("code_verifier")
        redirect_uri = form.get("redirect_uri")
        if not code or not verifier or not redirect_uri:
            return _oauth_error("invalid_request", "Missing required parameter")
        grant = self.grants.pop(code, None)  # single use, even when a later check fails
        if (
            grant is None
            or grant.expires_at <= provider.clock()
            or grant.client_id != provider.client_id
        ):
            return _oauth_error("invalid_grant", "Malformed auth code.")
        if grant.redirect_uri != redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri mismatch")
        if not hmac.compare_digest(s256(verifier), grant.code_challenge):
            return _oauth_error("invalid_grant", "Invalid code verifier.")
        id_token = provider.make_id_token(sub=grant.sub, nonce=grant.nonce, azp=provider.client_id)
        answer: dict[str, object] = {
            "access_token": self._access_token(),
            "expires_in": provider.access_token_lifetime,
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
            "id_token": id_token,
        }
        if grant.offline:
            refresh_token = "1//" + secrets.token_urlsafe(48)
            provider.refresh_grants[refresh_token] = RefreshGrant(grant.sub, grant.scopes)
            answer["refresh_token"] = refresh_token
        return _json(200, answer, **{"cache-control": "no-store"})

    def _access_token(self) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        self._provider.access_tokens.append(token)
        return token

    def _refresh(self, form: dict[str, str]) -> _Response:
        """``grant_type=refresh_token``: Google's answer, ``invalid_grant`` once revoked."""
        provider = self._provider
        provider.refresh_requests += 1
        grant = provider.refresh_grants.get(form.get("refresh_token", ""))
        if grant is None:
            return _oauth_error("invalid_grant", "Token has been expired or revoked.")
        answer = {
            "access_token": self._access_token(),
            "expires_in": provider.access_token_lifetime,
            "scope": " ".join(grant.scopes),
            "token_type": "Bearer",
        }
        return _json(200, answer, **{"cache-control": "no-store"})
