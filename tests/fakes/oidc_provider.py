"""A local OpenID provider for tests: a real HTTP server on loopback with Google's wire format.

The production client (:mod:`smartpip.auth.oidc`) talks to it over real HTTP, so tests run the code
that runs in production. Routes:

- ``GET /.well-known/openid-configuration``: the discovery document (``discovery_overrides``
  replaces fields, e.g. a foreign ``issuer``);
- ``GET /jwks``: the published public keys, ``Cache-Control: public, max-age=<jwks_max_age>``;
- ``POST /token``: the authorization-code grant with PKCE (S256) and client authentication
  (a grant consented with ``offline`` also gets a refresh token and its ``scope``), and the
  ``refresh_token`` grant (400 ``invalid_grant`` once the token is revoked or unknown);
  (HTTP Basic or form fields); errors are Google-style ``{"error", "error_description"}``:
  401 ``invalid_client`` for credentials other than ``client_id``/``client_secret``, 400
  ``unauthorized_client`` for the right ones while ``client_may_use_code_grant`` is false
  (Google's answer for an OAuth client whose type may not redeem codes);
- ``POST /revoke``: 200, the token appended to :attr:`FakeOidcProvider.revoked` (a refresh
  token stops refreshing); 400 ``invalid_token`` when it was already revoked.

The user's consent is simulated in Python by :meth:`FakeOidcProvider.authorize`, and
:meth:`FakeOidcProvider.make_id_token` mints ID tokens directly, hostile ones included.

This module holds the provider's state and its Python API; the HTTP routes live in
:mod:`tests.fakes.oidc_routes`, the key pools and JWT signing in :mod:`tests.fakes.jwt_keys`.

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

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from jwt.algorithms import RSAAlgorithm

from tests.fakes.jwt_keys import foreign_key, provider_key, s256, sign_jwt
from tests.fakes.oidc_routes import Grant, Mode, OidcRoutes, RefreshGrant

__all__ = ["CODE_LIFETIME", "FakeOidcProvider", "Mode", "foreign_key", "s256"]

# Why 60 s: Google's authorization codes live about a minute.
CODE_LIFETIME = 60.0


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
        client_may_use_code_grant: False makes ``/token`` refuse our authenticated client with
            ``unauthorized_client``.
        clock: Wall clock for code expiry and minted ``iat``/``exp``.
        refresh_grants: Live refresh tokens (``offline`` consents) by token; removing one plays
            the user revoking access in their Google account.
        refresh_requests: ``refresh_token`` grants received.
        access_tokens: Every access token issued, in order.
        access_token_lifetime: ``expires_in`` of the access tokens.
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
        self.client_may_use_code_grant = True
        self.refresh_grants: dict[str, RefreshGrant] = {}
        self.refresh_requests = 0
        self.access_tokens: list[str] = []
        self.access_token_lifetime = 3599
        self._keys: dict[str, rsa.RSAPrivateKey] = {}  # every key this provider made, by kid
        self._published: list[str] = []  # kids in the JWKS; the current one last
        self._routes = OidcRoutes(self)  # holds the grants
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
        key = provider_key(len(self._keys))
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
        self,
        *,
        sub: str,
        nonce: str,
        redirect_uri: str,
        code_challenge: str,
        client_id: str,
        scopes: Sequence[str] = ("openid",),
        offline: bool = False,
    ) -> str:
        """Simulate the user's consent at the authorization endpoint; returns the code.

        The code is single-use and expires after :data:`CODE_LIFETIME` seconds. ``scopes`` are
        what the user granted (a user may untick one), ``offline`` (``access_type=offline``)
        gets a refresh token too.
        """
        code = "4/" + secrets.token_urlsafe(24)
        expires_at = self.clock() + CODE_LIFETIME
        self._routes.grants[code] = Grant(
            client_id, redirect_uri, code_challenge, nonce, sub, expires_at, tuple(scopes), offline
        )
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
        if alg == "RS256" and key is None:
            key = self._keys.get(kid, self._keys[self.current_kid])
        return sign_jwt(header, claims, alg=alg, key=key)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``nursery.start(provider.run)`` returns :attr:`issuer`."""
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tests.fakes.oidc_provider")
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(serve, self._routes, config, mode="asgi")
            )
            self.issuer = binds[0]
            task_status.started(self.issuer)
