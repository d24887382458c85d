"""OpenID Connect client for Google sign-in: discovery, signing keys, ID tokens, code exchange.

Runs on trio with the service's shared ``httpx.AsyncClient`` (never pyjwt's ``PyJWKClient``,
which blocks the event loop on urllib). Exceptions::

    OidcError
      OidcUnavailable  the issuer cannot be reached, answers nonsense or is misconfigured (its
                       discovery document names another issuer, it refuses our client
                       credentials), and nothing cached serves                       -> 503
      OidcRejected     a token or code failed a check; str() names the check        -> 401

Messages and logs never carry a token, a code, the client secret or an e-mail address.

Caching: the discovery document and the key set (JWKS) are fetched lazily and kept for their
``Cache-Control: max-age`` (clamped) or the configured default. A failed refresh keeps serving
the last good copy (logged as a warning). An unknown ``kid`` refetches the key set at most once
per ``kid_refetch_cooldown``, however many tokens carry it; then the token is rejected.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import quote_plus

import attrs
import httpx
import jwt
import trio
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from smartpip.logs import get_logger

__all__ = [
    "GOOGLE_ISSUER",
    "OidcClient",
    "OidcError",
    "OidcRejected",
    "OidcSettings",
    "OidcUnavailable",
    "VerifiedIdentity",
    "accepted_issuers",
]

log = get_logger(__name__)
T = TypeVar("T")

GOOGLE_ISSUER = "https://accounts.google.com"
# Google still signs some ID tokens with the scheme-less issuer of its early days.
_GOOGLE_LEGACY_ISSUER = "accounts.google.com"
# Why 256 KiB: Google's discovery document and key set are a few KiB and a token answer is
# under 4 KiB; anything far larger is not what we asked for.
_MAX_BODY = 256 * 1024
# Why 10 s: the shared client's timeouts bound each connect and read, but a server dripping
# bytes stays under them forever; this bounds the whole exchange (twice the default timeout).
_REQUEST_DEADLINE = 10.0
# Why 5 s: after a failed fetch, callers get the cached copy (or 503) at once instead of each
# waiting out a timeout against a dead issuer, and a recovered issuer is noticed within 5 s.
_FAILURE_BACKOFF = 5.0
# Why clamp max-age to [60 s, 1 day]: a zero max-age would send every sign-in to the issuer,
# a huge one would keep a withdrawn key trusted. Google sends hours for both documents.
_MIN_MAX_AGE, _MAX_MAX_AGE = 60.0, 86400.0
# Why 16 KiB: Google ID tokens are about 1 KiB; our request bodies are capped at 16 KiB anyway.
_MAX_TOKEN_CHARS = 16 * 1024
# Why 2048 bits: the minimum RSA size of RFC 7518 3.3; Google's keys are 2048 bits.
_MIN_RSA_BITS = 2048
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_OAUTH_ERROR = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_PYJWT_CHECKS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "id token signature invalid"),
    (jwt.ExpiredSignatureError, "id token expired"),
    (jwt.ImmatureSignatureError, "id token issued in the future"),
    (jwt.InvalidAudienceError, "id token audience mismatch"),
    (jwt.InvalidIssuerError, "id token issuer mismatch"),
    (jwt.InvalidAlgorithmError, "id token algorithm not allowed"),
    (jwt.InvalidKeyError, "id token signing key rejected"),
    (jwt.DecodeError, "id token malformed"),
)


class OidcError(Exception):
    """Base class of this module's errors."""


class OidcUnavailable(OidcError):
    """The issuer cannot be reached (or is misconfigured) and nothing cached serves: HTTP 503."""


class OidcRejected(OidcError):
    """Verification failed; ``str()`` names the check, never the token: HTTP 401."""


@attrs.frozen
class OidcSettings:
    """How to reach and trust the OpenID provider.

    Attributes:
        issuer: The issuer URL; discovery is at ``<issuer>/.well-known/openid-configuration``.
        client_id: Our OAuth client ID (the required ``aud``).
        client_secret: Sent to the token endpoint with HTTP Basic.
        leeway: Seconds of clock skew tolerated on ``exp``, ``iat`` and ``nbf``.
        kid_refetch_cooldown: Minimum seconds between key-set refetches for unknown kids.
        default_jwks_max_age: Key-set lifetime when the response has no ``max-age``.
        discovery_max_age: Discovery-document lifetime when the response has no ``max-age``.
    """

    issuer: str
    client_id: str
    client_secret: str = attrs.field(repr=False)
    leeway: float = 60.0
    kid_refetch_cooldown: float = 60.0
    default_jwks_max_age: float = 3600.0
    discovery_max_age: float = 3600.0


@attrs.frozen
class VerifiedIdentity:
    """Who an ID token speaks for; the account key is ``(issuer, subject)``.

    Attributes:
        issuer: The configured issuer (trailing slash stripped), also for tokens that carry
            Google's legacy ``accounts.google.com``.
        subject: The ``sub`` claim.
        nonce: The ``nonce`` claim; the caller checks and consumes it.
    """

    issuer: str
    subject: str
    nonce: str


def accepted_issuers(issuer: str) -> tuple[str, ...]:
    """The ``iss`` values accepted for ``issuer``: itself, plus the legacy form for Google."""
    if issuer.rstrip("/") == GOOGLE_ISSUER:
        return (issuer, _GOOGLE_LEGACY_ISSUER)
    return (issuer,)


class _FetchFailed(Exception):
    """An upstream request failed; the message says why (no secrets)."""


@attrs.frozen
class _Discovery:
    issuer: str
    jwks_uri: str
    token_endpoint: str
    revocation_endpoint: str | None


@attrs.define(eq=False)
class _Cached(Generic[T]):
    """One upstream document, parsed, with its expiry (monotonic seconds).

    Concurrency: ``lock`` admits one fetch at a time. A caller that finds the copy missing or
    stale notes ``generation``, takes the lock, and fetches only if ``generation`` has not
    moved, i.e. no fetch (good or failed) ended while it waited; otherwise it uses what that
    fetch left. So any number of concurrent callers cause one fetch.
    """

    value: T | None = None
    expires_at: float = -math.inf
    retry_at: float = -math.inf  # no fetch before this, after a failure
    generation: int = 0
    last_error: str = "never fetched"
    lock: trio.Lock = attrs.field(factory=trio.Lock)

    def fresh(self, now: float) -> T | None:
        return self.value if now < self.expires_at else None


class OidcClient:
    """Verifies ID tokens and exchanges authorization codes with one OpenID provider.

    Args:
        settings: Issuer, client and cache settings.
        http: The shared client (its timeouts apply; redirects are never followed).
        clock: Wall clock for ``exp``, ``iat`` and ``nbf``.
        monotonic: Clock for cache lifetimes and the refetch cool-down.
    """

    def __init__(
        self,
        settings: OidcSettings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._monotonic = monotonic
        self._issuer = settings.issuer.rstrip("/")
        self._discovery_cache: _Cached[_Discovery] = _Cached()
        self._jwks_cache: _Cached[Mapping[str, RSAPublicKey]] = _Cached()
        self._next_kid_refetch = -math.inf

    async def verify_id_token(self, id_token: str) -> VerifiedIdentity:
        """Verify an ID token's signature and claims (not its nonce against any store).

        Raises:
            OidcRejected: A check failed (alg not RS256, unknown key, bad signature, ``iss``,
                ``aud``, ``azp``, ``exp``, ``iat``, missing ``nonce``...).
            OidcUnavailable: No key set could be obtained.
        """
        if not isinstance(id_token, str) or len(id_token) > _MAX_TOKEN_CHARS:
            raise OidcRejected("id token malformed")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcRejected("id token malformed") from None
        if header.get("alg") != "RS256":
            raise OidcRejected("id token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OidcRejected("id token has no key id")
        discovery = await self._discovery()
        key = await self._signing_key(kid)
        try:
            claims = jwt.decode(
                id_token,
                key,
                algorithms=["RS256"],
                audience=self._settings.client_id,
                issuer=accepted_issuers(discovery.issuer),
                # Time claims are checked below against the injected clock.
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.MissingRequiredClaimError as error:
            raise OidcRejected(f"id token lacks the {error.claim} claim") from None
        except jwt.PyJWTError as error:
            message = next((m for t, m in _PYJWT_CHECKS if isinstance(error, t)), None)
            raise OidcRejected(message or "id token invalid") from None
        return self._check_claims(claims)

    def _check_claims(self, claims: Mapping[str, Any]) -> VerifiedIdentity:
        now, leeway = self._clock(), self._settings.leeway
        if _time_claim(claims, "exp") <= now - leeway:
            raise OidcRejected("id token expired")
        if _time_claim(claims, "iat") > now + leeway:
            raise OidcRejected("id token issued in the future")
        if "nbf" in claims and _time_claim(claims, "nbf") > now + leeway:
            raise OidcRejected("id token not yet valid")
        azp, aud = claims.get("azp"), claims["aud"]
        if azp is not None and azp != self._settings.client_id:
            raise OidcRejected("id token authorized party mismatch")
        if azp is None and isinstance(aud, list) and len(aud) > 1:
            raise OidcRejected("id token authorized party missing")
        subject, nonce = claims["sub"], claims.get("nonce")
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise OidcRejected("id token subject invalid")
        if not isinstance(nonce, str) or not nonce:
            raise OidcRejected("id token has no nonce")
        return VerifiedIdentity(issuer=self._issuer, subject=subject, nonce=nonce)

    async def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> str:
        """Redeem an authorization code (PKCE) at the token endpoint; returns the ID token.

        The client authenticates with HTTP Basic (RFC 6749 2.3.1). The ID token is returned
        unverified: pass it to :meth:`verify_id_token`.

        Raises:
            OidcRejected: The endpoint refused the grant (bad, reused or expired code, wrong
                verifier or redirect URI); the message names the OAuth error code.
            OidcUnavailable: Network error, timeout, 5xx, 408, 429, a malformed answer, or a
                refusal of our own credentials (``invalid_client``/``unauthorized_client``,
                or any 401): that is our misconfiguration, which the user cannot fix, so it is
                logged as a warning and answered 503.
        """
        discovery = await self._discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": code_verifier,
            "redirect_uri": redirect_uri,
        }
        settings = self._settings
        auth = httpx.BasicAuth(quote_plus(settings.client_id), quote_plus(settings.client_secret))
        status, body = await self._call("POST", discovery.token_endpoint, data=form, auth=auth)
        if status == 200:
            id_token = _json_object(body).get("id_token")
            if not isinstance(id_token, str) or not id_token:
                raise _unavailable("token endpoint answered without an id token")
            return id_token
        error = _oauth_error(body)
        if status == 401 or error in ("invalid_client", "unauthorized_client"):
            raise _unavailable(f"token endpoint refused our client credentials: {error}")
        if 400 <= status < 500 and status not in (408, 429):
            raise OidcRejected(f"code exchange refused: {error}")
        raise _unavailable(f"token endpoint answered HTTP {status}")

    async def revoke(self, token: str) -> None:
        """Revoke a Google token at the revocation endpoint.

        An ``invalid_token`` answer (already revoked or expired) counts as done.

        Raises:
            OidcUnavailable: No revocation endpoint, network error, or any other answer.
        """
        endpoint = (await self._discovery()).revocation_endpoint
        if endpoint is None:
            raise _unavailable("the provider has no revocation endpoint")
        status, body = await self._call("POST", endpoint, data={"token": token})
        if status != 200 and not (status == 400 and _oauth_error(body) == "invalid_token"):
            raise _unavailable(f"revocation endpoint answered HTTP {status}")

    async def _call(
        self, method: str, url: str, *, data: Mapping[str, str], auth: httpx.Auth | None = None
    ) -> tuple[int, bytes]:
        try:
            status, _, body = await self._request(method, url, data=data, auth=auth)
        except _FetchFailed as error:
            raise _unavailable(f"OpenID provider unreachable: {error}") from None
        return status, body

    async def _discovery(self) -> _Discovery:
        """The discovery document, fetched when missing or stale (last good copy on failure)."""
        cache = self._discovery_cache
        value = cache.fresh(self._monotonic())
        if value is not None:
            return value
        seen = cache.generation
        async with cache.lock:
            if cache.generation == seen:
                await self._refresh(cache, self._fetch_discovery, "discovery document")
        if cache.value is None:
            raise OidcUnavailable(f"OpenID discovery unavailable: {cache.last_error}")
        return cache.value

    async def _signing_key(self, kid: str) -> RSAPublicKey:
        """The verification key for ``kid``.

        The set is refetched when missing or stale, and when ``kid`` is unknown at most once
        per cool-down; concurrent callers share one fetch (see :class:`_Cached`).
        """
        cache = self._jwks_cache
        keys = cache.fresh(self._monotonic())
        if keys is not None and kid in keys:
            return keys[kid]
        seen = cache.generation
        async with cache.lock:
            now = self._monotonic()
            if cache.generation == seen:
                if cache.fresh(now) is None:
                    await self._refresh(cache, self._fetch_jwks, "signing keys")
                elif now >= self._next_kid_refetch:
                    self._next_kid_refetch = now + self._settings.kid_refetch_cooldown
                    await self._refresh(cache, self._fetch_jwks, "signing keys")
        if cache.value is None:
            raise OidcUnavailable(f"signing keys unavailable: {cache.last_error}")
        if kid not in cache.value:
            raise OidcRejected("unknown signing key")
        return cache.value[kid]

    async def _refresh(
        self, cache: _Cached[T], fetch: Callable[[], Awaitable[tuple[T, float]]], what: str
    ) -> None:
        """Fetch into ``cache``, whose lock the caller holds, unless a failure was too recent."""
        if self._monotonic() < cache.retry_at:
            return
        # The generation moves when the fetch ends (not when it starts, nor when it is
        # cancelled): callers that queued behind it use its result instead of fetching again.
        try:
            value, max_age = await fetch()
        except _FetchFailed as error:
            cache.generation += 1
            cache.last_error = str(error)
            cache.retry_at = self._monotonic() + _FAILURE_BACKOFF
            serving = "the last good copy" if cache.value is not None else "nothing"
            log.warning("OpenID fetch failed", document=what, reason=str(error), serving=serving)
        else:
            cache.generation += 1
            cache.value, cache.expires_at = value, self._monotonic() + max_age

    async def _fetch_discovery(self) -> tuple[_Discovery, float]:
        url = f"{self._issuer}/.well-known/openid-configuration"
        document, max_age = await self._get_json(url)
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self._issuer:
            raise _FetchFailed("discovery names another issuer than the configured one")
        discovery = _Discovery(
            issuer=issuer,
            jwks_uri=_endpoint(document, "jwks_uri"),
            token_endpoint=_endpoint(document, "token_endpoint"),
            revocation_endpoint=_optional_endpoint(document, "revocation_endpoint"),
        )
        return discovery, _lifetime(max_age, self._settings.discovery_max_age)

    async def _fetch_jwks(self) -> tuple[Mapping[str, RSAPublicKey], float]:
        try:
            discovery = await self._discovery()
        except OidcUnavailable as error:
            raise _FetchFailed(str(error)) from None
        document, max_age = await self._get_json(discovery.jwks_uri)
        return _parse_jwks(document), _lifetime(max_age, self._settings.default_jwks_max_age)

    async def _get_json(self, url: str) -> tuple[dict[str, Any], float | None]:
        """A JSON object and its ``Cache-Control: max-age``, if any."""
        status, headers, body = await self._request("GET", url)
        if status != 200:
            raise _FetchFailed(f"{url} answered HTTP {status}")
        document = _json_object(body)
        if not document:
            raise _FetchFailed(f"{url} answered something else than a JSON object")
        match = _MAX_AGE.search(", ".join(headers.get_list("cache-control")))
        return document, float(match.group(1)) if match else None

    async def _request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> tuple[int, httpx.Headers, bytes]:
        """One bounded request: overall deadline, body size cap, no redirects.

        Raises:
            _FetchFailed: Network error, timeout, or a body over 256 KiB.
        """
        where = url.partition("?")[0]
        try:
            with trio.fail_after(_REQUEST_DEADLINE):
                async with self._http.stream(
                    method, url, data=data, auth=auth, follow_redirects=False
                ) as response:
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > _MAX_BODY:
                        raise _FetchFailed(f"{where} answered more than {_MAX_BODY} bytes")
                    body = bytearray()
                    with trio.CancelScope() as reading:
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > _MAX_BODY:
                                # Not `break`: httpx's nested async generators, abandoned,
                                # are left to the GC (a ResourceWarning under trio); a
                                # cancelled read unwinds them from the inside.
                                reading.cancel()
                    if len(body) > _MAX_BODY:
                        raise _FetchFailed(f"{where} answered more than {_MAX_BODY} bytes")
                    return response.status_code, response.headers, bytes(body)
        except trio.TooSlowError:
            raise _FetchFailed(f"{where} did not answer within {_REQUEST_DEADLINE:g} s") from None
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
            raise _FetchFailed(f"{where} failed: {type(error).__name__}") from None


def _unavailable(message: str) -> OidcUnavailable:
    """An OidcUnavailable, logged as a warning: the operator, not the user, must act."""
    log.warning("OpenID provider unavailable", reason=message)
    return OidcUnavailable(message)


def _time_claim(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate claim as a float; anything else is rejected."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OidcRejected(f"id token {name} claim malformed")
    return float(value)


def _lifetime(max_age: float | None, default: float) -> float:
    if max_age is None:
        return default
    return min(max(max_age, _MIN_MAX_AGE), _MAX_MAX_AGE)


def _endpoint(document: Mapping[str, Any], name: str) -> str:
    url = document.get(name)
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _FetchFailed(f"discovery has no valid {name}")
    return url


def _optional_endpoint(document: Mapping[str, Any], name: str) -> str | None:
    return None if document.get(name) is None else _endpoint(document, name)


def _json_object(body: bytes) -> dict[str, Any]:
    """``body`` parsed as a JSON object, or ``{}`` when it is anything else."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _oauth_error(body: bytes) -> str:
    """The OAuth ``error`` code of an error answer, if it looks like one."""
    error = _json_object(body).get("error")
    if isinstance(error, str) and _OAUTH_ERROR.fullmatch(error):
        return error
    return "unknown_error"


def _parse_jwks(document: Mapping[str, Any]) -> dict[str, RSAPublicKey]:
    """The RS256 signature keys of a JWKS by kid; others (and private keys) are skipped."""
    raw = document.get("keys")
    if not isinstance(raw, list):
        raise _FetchFailed("the key set has no key list")
    keys: dict[str, RSAPublicKey] = {}
    for jwk in raw:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or "d" in jwk:
            continue
        kid = jwk.get("kid")
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        if not (isinstance(kid, str) and kid and all(isinstance(jwk.get(p), str) for p in "ne")):
            continue
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (jwt.PyJWTError, ValueError):
            continue
        if isinstance(key, RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
            keys[kid] = key
    if not keys:
        raise _FetchFailed("the key set holds no usable RS256 key")
    return keys
