"""A local OpenID provider for tests: a real HTTP server on loopback with Google's wire format.

The production client (:mod:`smartpip.oidc`) talks to it over real HTTP, so tests run the code
that runs in production. Routes:

- ``GET /.well-known/openid-configuration``: the discovery document (``discovery_overrides``
  replaces fields, e.g. a foreign ``issuer``);
- ``GET /jwks``: the published public keys, ``Cache-Control: public, max-age=<jwks_max_age>``;
- ``POST /token``: the authorization-code grant with PKCE (S256) and client authentication
  (HTTP Basic or form fields); errors are Google-style ``{"error", "error_description"}``;
- ``POST /revoke``: 200, the token appended to :attr:`FakeOidcProvider.revoked`; 400
  ``invalid_token`` when it was already revoked.

The user's consent is simulated in Python by :meth:`FakeOidcProvider.authorize`, and
:meth:`FakeOidcProvider.make_id_token` mints ID tokens directly, hostile ones included.

Faults, effective from the next request: ``mode`` (every route) and ``jwks_mode`` (``/jwks``
only, while ``mode`` is ``"ok"``), each one of ``"ok"``; ``"down"`` (503 at once); ``"slow"``
(wait ``slow_seconds``, then answer normally); ``"malformed"`` (200, body not JSON);
``"huge"`` (200, valid JSON over 256 KiB); ``"redirect"`` (302 to the same URL).

Usage (pytest-trio)::

    @pytest.fixture
    async def provider(nursery: trio.Nursery) -> FakeOidcProvider:
        provider = FakeOidcProvider()
        await nursery.start(provider.run)  # returns provider.issuer, "http://127.0.0.1:PORT"
        return provider

    verifier = "v" * 43
    code = provider.authorize(sub="user-1", nonce="n-1", redirect_uri=REDIRECT_URI,
                              code_challenge=s256(verifier), client_id=provider.client_id)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus

import attrs
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from jwt.algorithms import RSAAlgorithm

__all__ = ["CODE_LIFETIME", "FakeOidcProvider", "Mode", "foreign_key", "s256"]

Mode = Literal["ok", "down", "slow", "malformed", "huge", "redirect"]
_Response = tuple[int, dict[str, str], bytes]

# Why pools: a 2048-bit RSA key takes 50-200 ms to generate. Tests of one process share keys
# (kids are random per provider, so nothing else is shared); foreign keys come from their own
# pool, so they are never published by any provider.
_PROVIDER_KEYS: list[rsa.RSAPrivateKey] = []
_FOREIGN_KEYS: list[rsa.RSAPrivateKey] = []
# Why 60 s: Google's authorization codes live about a minute.
CODE_LIFETIME = 60.0
# Why 300 KiB: over smartpip.oidc's 256 KiB limit on upstream documents.
_HUGE_PADDING = 300 * 1024


def _pooled(pool: list[rsa.RSAPrivateKey], index: int) -> rsa.RSAPrivateKey:
    while len(pool) <= index:
        pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return pool[index]


def foreign_key(index: int = 0) -> rsa.RSAPrivateKey:
    """An RSA key that no provider publishes, for "signed by another key" tests."""
    return _pooled(_FOREIGN_KEYS, index)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``: BASE64URL(SHA256(verifier)), unpadded."""
    return _b64(hashlib.sha256(verifier.encode("utf-8")).digest())


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


@attrs.frozen
class _Grant:
    """What the user consented to at the authorization endpoint, redeemable once."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    sub: str
    expires_at: float


class FakeOidcProvider:
    """A Google-like OpenID provider on ``127.0.0.1:<ephemeral>``.

    Attributes:
        issuer: ``http://127.0.0.1:PORT`` once :meth:`run` has started (empty before).
        mode, jwks_mode: Fault injection (see the module docstring).
        slow_seconds: Delay of the ``"slow"`` mode.
        jwks_max_age, discovery_max_age: ``Cache-Control`` max-age; None sends no header.
        discovery_overrides: Fields replaced in (or, with None, removed from) discovery.
        jwks_requests, discovery_requests, token_requests, revoke_requests: Requests received,
            whatever the fault mode.
        revoked: Tokens posted to the revocation endpoint, in order.
        token_auth: How each token request authenticated: ``"basic"``, ``"form"``, ``"none"``.
        clock: Wall clock for code expiry and minted ``iat``/``exp``.
    """

    def __init__(
        self,
        *,
        client_id: str = "test-client.apps.googleusercontent.com",
        client_secret: str = "test-client-secret",
        clock: Callable[[], float] = time.time,
        jwks_max_age: int | None = 3600,
        discovery_max_age: int | None = 3600,
        slow_seconds: float = 5.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
        self.jwks_max_age = jwks_max_age
        self.discovery_max_age = discovery_max_age
        self.slow_seconds = slow_seconds
        self.issuer = ""
        self.mode: Mode = "ok"
        self.jwks_mode: Mode = "ok"
        self.discovery_overrides: dict[str, Any] = {}
        self.jwks_requests = self.discovery_requests = 0
        self.token_requests = self.revoke_requests = 0
        self.revoked: list[str] = []
        self.token_auth: list[str] = []
        self._keys: dict[str, rsa.RSAPrivateKey] = {}  # every key this provider made, by kid
        self._published: list[str] = []  # kids in the JWKS; the current one last
        self._grants: dict[str, _Grant] = {}
        self.rotate_keys(keep_old=False)

    @property
    def current_kid(self) -> str:
        """The kid that signs tokens by default."""
        return self._published[-1]

    @property
    def published_kids(self) -> tuple[str, ...]:
        """The kids served at ``/jwks``."""
        return tuple(self._published)

    def rotate_keys(self, *, keep_old: bool = True) -> str:
        """Make a new current signing key with a new kid; returns the kid.

        Args:
            keep_old: Keep the previous keys in the JWKS (False drops them; tokens can still
                be minted with an old kid, to play a token signed before the rotation).
        """
        key = _pooled(_PROVIDER_KEYS, len(self._keys))
        kid = secrets.token_hex(8)
        self._keys[kid] = key
        self._published = [*self._published, kid] if keep_old else [kid]
        return kid

    def jwks_text(self) -> bytes:
        """The JWKS document exactly as served (the secret of a classic HS256 attack)."""
        keys = [
            {**RSAAlgorithm.to_jwk(self._keys[kid].public_key(), as_dict=True), "kid": kid}
            | {"alg": "RS256", "use": "sig"}
            for kid in self._published
        ]
        return json.dumps({"keys": keys}).encode()

    def public_key_pem(self, kid: str | None = None) -> bytes:
        """The PEM public key of ``kid`` (default: the current key)."""
        public = self._keys[kid or self.current_kid].public_key()
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def authorize(
        self, *, sub: str, nonce: str, redirect_uri: str, code_challenge: str, client_id: str
    ) -> str:
        """Simulate the user's consent at the authorization endpoint; returns the code.

        The code is single-use and expires after :data:`CODE_LIFETIME` seconds.
        """
        code = "4/" + secrets.token_urlsafe(24)
        expires_at = self.clock() + CODE_LIFETIME
        self._grants[code] = _Grant(client_id, redirect_uri, code_challenge, nonce, sub, expires_at)
        return code

    def make_id_token(
        self,
        *,
        sub: str,
        nonce: str | None,
        aud: str | list[str] | None = None,
        iss: str | None = None,
        iat: float | None = None,
        exp: float | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        extra_claims: Mapping[str, Any] | None = None,
        azp: str | None = None,
        key: rsa.RSAPrivateKey | bytes | None = None,
    ) -> str:
        """Mint an ID token, valid by default (this issuer and client, one hour).

        Args:
            sub: The subject.
            nonce: The ``nonce`` claim; None leaves it out.
            aud: Default the client ID.
            iss: Default :attr:`issuer`.
            iat: Default ``clock()``; ``exp`` defaults to ``iat + 3600``.
            exp: Expiry (seconds since the epoch).
            kid: Header ``kid``, default the current key's (``""`` leaves it out). With no
                ``key``, the key of ``kid`` signs, or the current key for a kid never made.
            alg: ``"RS256"``, ``"HS256"`` (``key`` is the secret, bytes) or ``"none"``.
            extra_claims: Merged last; a None value removes the claim (``{"exp": None}``).
            azp: The ``azp`` claim, absent by default.
            key: An RSA key (e.g. :func:`foreign_key`) or the HS256 secret.
        """
        issued = self.clock() if iat is None else iat
        claims: dict[str, Any] = {
            "iss": self.issuer if iss is None else iss,
            "aud": self.client_id if aud is None else aud,
            "sub": sub,
            "iat": int(issued),
            "exp": int(issued + 3600 if exp is None else exp),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if azp is not None:
            claims["azp"] = azp
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        kid = self.current_kid if kid is None else kid
        header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid else {})
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        data = signing_input.encode("ascii")
        if alg == "RS256":
            signer = key if key is not None else self._keys.get(kid, self._keys[self.current_kid])
            if not isinstance(signer, rsa.RSAPrivateKey):
                raise TypeError("RS256 needs an RSA private key")
            signature = signer.sign(data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "HS256":
            if not isinstance(key, bytes):
                raise TypeError("HS256 needs the secret as bytes")
            signature = hmac.digest(key, data, "sha256")
        elif alg == "none":
            signature = b""
        else:
            raise ValueError(f"unsupported alg {alg!r}")
        return f"{signing_input}.{_b64(signature)}"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``nursery.start(provider.run)`` returns :attr:`issuer`."""
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tests.fakes.oidc_provider")
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(partial(serve, self._app, config, mode="asgi"))
            self.issuer = binds[0]
            task_status.started(self.issuer)

    async def _app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
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
        counters = {
            ("GET", "/.well-known/openid-configuration"): "discovery_requests",
            ("GET", "/jwks"): "jwks_requests",
            ("POST", "/token"): "token_requests",
            ("POST", "/revoke"): "revoke_requests",
        }
        counter = counters.get((method, path))
        if counter is None:
            return _json(404, {"error": "not_found"})
        setattr(self, counter, getattr(self, counter) + 1)
        mode = self.jwks_mode if path == "/jwks" and self.mode == "ok" else self.mode
        if mode == "down":
            return _json(503, {"error": "temporarily_unavailable"})
        if mode == "malformed":
            return 200, {"content-type": "application/json"}, b'{"keys": [ not json'
        if mode == "huge":
            return _json(200, {"keys": [], "padding": "x" * _HUGE_PADDING})
        if mode == "redirect":
            return 302, {"location": self.issuer + path}, b""
        if mode == "slow":
            await trio.sleep(self.slow_seconds)
        if path == "/jwks":
            return 200, self._cache_headers(self.jwks_max_age), self.jwks_text()
        if path == "/token":
            return self._token(headers, body)
        if path == "/revoke":
            token = dict(parse_qsl(body.decode("utf-8", "replace"))).get("token", "")
            if not token or token in self.revoked:  # Google's answer for a dead token
                return _oauth_error("invalid_token", "Token expired or revoked")
            self.revoked.append(token)
            return 200, {}, b""
        return _json(200, self._discovery(), **self._cache_headers(self.discovery_max_age))

    @staticmethod
    def _cache_headers(max_age: int | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if max_age is not None:
            headers["cache-control"] = f"public, max-age={max_age}, must-revalidate, no-transform"
        return headers

    def _discovery(self) -> dict[str, Any]:
        base = self.issuer
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
        for name, value in self.discovery_overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    def _token(self, headers: dict[str, str], body: bytes) -> _Response:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        basic = _basic_credentials(headers.get("authorization"))
        self.token_auth.append("basic" if basic else "form" if "client_secret" in form else "none")
        credentials = basic or (form.get("client_id"), form.get("client_secret"))
        if credentials != (self.client_id, self.client_secret):
            return _oauth_error("invalid_client", "Unauthorized", status=401)
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _oauth_error("invalid_request", "Body must be form-encoded")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        code, verifier = form.get("code"), form.get("code_verifier")
        redirect_uri = form.get("redirect_uri")
        if not code or not verifier or not redirect_uri:
            return _oauth_error("invalid_request", "Missing required parameter")
        grant = self._grants.pop(code, None)  # single use, even when a later check fails
        if grant is None or grant.expires_at <= self.clock() or grant.client_id != self.client_id:
            return _oauth_error("invalid_grant", "Malformed auth code.")
        if grant.redirect_uri != redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri mismatch")
        if not hmac.compare_digest(s256(verifier), grant.code_challenge):
            return _oauth_error("invalid_grant", "Invalid code verifier.")
        id_token = self.make_id_token(sub=grant.sub, nonce=grant.nonce, azp=self.client_id)
        answer = {
            "access_token": "ya29." + secrets.token_urlsafe(32),
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": "openid",
            "id_token": id_token,
        }
        return _json(200, answer, **{"cache-control": "no-store"})
