"""The discovery and key-set caches: max-age, failure back-off, kid cool-down, single-flight.

Both documents are fetched lazily and kept for their ``Cache-Control: max-age`` (clamped) or
the configured default. A failed refresh keeps serving the last good copy (logged as a
warning), and no fetch is tried again for :data:`FAILURE_BACKOFF` seconds. An unknown ``kid``
refetches the key set at most once per ``kid_refetch_cooldown``, however many tokens carry it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

import attrs
import httpx
import trio
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from smartpip.auth.oidc._documents import Discovery, parse_discovery, parse_jwks
from smartpip.auth.oidc._errors import FetchFailed, OidcRejected, OidcUnavailable, log
from smartpip.auth.oidc._fetch import get_json
from smartpip.auth.oidc._settings import OidcSettings

__all__ = ["FAILURE_BACKOFF", "Cached", "ProviderCache", "RequestHook"]

T = TypeVar("T")

# Why 5 s: after a failed fetch, callers get the cached copy (or 503) at once instead of each
# waiting out a timeout against a dead issuer, and a recovered issuer is noticed within 5 s.
FAILURE_BACKOFF = 5.0
# Why clamp max-age to [60 s, 1 day]: a zero max-age would send every sign-in to the issuer,
# a huge one would keep a withdrawn key trusted. Google sends hours for both documents.
_MIN_MAX_AGE, _MAX_MAX_AGE = 60.0, 86400.0
# The documents' names in the log, by their endpoint name in the metrics.
_DOCUMENTS = {"discovery": "discovery document", "jwks": "signing keys"}

RequestHook = Callable[[str, str], None]
"""Called with an endpoint and an outcome after each request to the provider."""


@attrs.define(eq=False)
class Cached(Generic[T]):
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


class ProviderCache:
    """The provider's discovery document and signing keys, fetched on demand and cached.

    Args:
        settings: Issuer and cache settings.
        http: The shared client.
        monotonic: Clock for cache lifetimes, the failure back-off and the refetch cool-down.
        on_request: Called with ``("discovery" or "jwks", "ok" or "error")`` after each fetch.
    """

    def __init__(
        self,
        settings: OidcSettings,
        http: httpx.AsyncClient,
        monotonic: Callable[[], float],
        on_request: RequestHook,
    ) -> None:
        self._on_request = on_request
        self._settings = settings
        self._http = http
        self._monotonic = monotonic
        self._issuer = settings.issuer.rstrip("/")
        self._discovery_cache: Cached[Discovery] = Cached()
        self._jwks_cache: Cached[Mapping[str, RSAPublicKey]] = Cached()
        self._next_kid_refetch = -math.inf

    async def discovery(self) -> Discovery:
        """The discovery document, fetched when missing or stale (last good copy on failure).

        Raises:
            OidcUnavailable: No copy could be obtained.
        """
        cache = self._discovery_cache
        value = cache.fresh(self._monotonic())
        if value is not None:
            return value
        seen = cache.generation
        async with cache.lock:
            if cache.generation == seen:
                await self._refresh(cache, self._fetch_discovery, "discovery")
        if cache.value is None:
            raise OidcUnavailable(f"OpenID discovery unavailable: {cache.last_error}")
        return cache.value

    async def signing_key(self, kid: str) -> RSAPublicKey:
        """The verification key for ``kid``.

        The set is refetched when missing or stale, and when ``kid`` is unknown at most once
        per cool-down; concurrent callers share one fetch (see :class:`Cached`).

        Raises:
            OidcUnavailable: No key set could be obtained.
            OidcRejected: The key set has no key ``kid``.
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
                    await self._refresh(cache, self._fetch_jwks, "jwks")
                elif now >= self._next_kid_refetch:
                    self._next_kid_refetch = now + self._settings.kid_refetch_cooldown
                    await self._refresh(cache, self._fetch_jwks, "jwks")
        if cache.value is None:
            raise OidcUnavailable(f"signing keys unavailable: {cache.last_error}")
        if kid not in cache.value:
            raise OidcRejected("unknown signing key")
        return cache.value[kid]

    async def _refresh(
        self, cache: Cached[T], fetch: Callable[[], Awaitable[tuple[T, float]]], endpoint: str
    ) -> None:
        """Fetch into ``cache``, whose lock the caller holds, unless a failure was too recent."""
        what = _DOCUMENTS[endpoint]
        if self._monotonic() < cache.retry_at:
            return
        # The generation moves when the fetch ends (not when it starts, nor when it is
        # cancelled): callers that queued behind it use its result instead of fetching again.
        try:
            value, max_age = await fetch()
        except FetchFailed as error:
            cache.generation += 1
            cache.last_error = str(error)
            cache.retry_at = self._monotonic() + FAILURE_BACKOFF
            serving = "the last good copy" if cache.value is not None else "nothing"
            log.warning("OpenID fetch failed", document=what, reason=str(error), serving=serving)
            self._on_request(endpoint, "error")
        else:
            self._on_request(endpoint, "ok")
            cache.generation += 1
            cache.value, cache.expires_at = value, self._monotonic() + max_age

    async def _fetch_discovery(self) -> tuple[Discovery, float]:
        url = f"{self._issuer}/.well-known/openid-configuration"
        document, max_age = await get_json(self._http, url)
        discovery = parse_discovery(document, self._issuer)
        return discovery, _lifetime(max_age, self._settings.discovery_max_age)

    async def _fetch_jwks(self) -> tuple[Mapping[str, RSAPublicKey], float]:
        try:
            discovery = await self.discovery()
        except OidcUnavailable as error:
            raise FetchFailed(str(error)) from None
        document, max_age = await get_json(self._http, discovery.jwks_uri)
        return parse_jwks(document), _lifetime(max_age, self._settings.default_jwks_max_age)


def _lifetime(max_age: float | None, default: float) -> float:
    if max_age is None:
        return default
    return min(max(max_age, _MIN_MAX_AGE), _MAX_MAX_AGE)
