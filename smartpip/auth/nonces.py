"""Sign-in nonces: issued by ``/v1/auth/oidc/start``, consumed once by the callback.

A nonce is ``<random>.<expiry>.<mac>``: 192 random bits, its expiry (Unix seconds) and an
HMAC over both, keyed by a key derived from our JWT keys. So "one we issued and not expired"
is checked without any storage, and only "used once" needs shared state: a marker in Redis
(:func:`store.nonces.claim_nonce`) kept until the nonce expires.

Redis down: the marker falls back to a per-process set (bounded, expiring), so sign-in keeps
working; during such an outage a nonce could be used once per replica instead of once in all,
which still requires a valid ID token carrying it. This is logged and counted as degraded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence

import attrs

from smartpip.http.tokens import JwtKey
from smartpip.logs import get_logger
from store.nonces import LocalMarkers, claim_nonce
from store.redis import RedisStore, RedisUnavailable

__all__ = ["NONCE_TTL", "NonceRejected", "Nonces", "StartedLogin"]

# Why 10 minutes: a user may linger on Google's consent screen; longer only widens replay.
NONCE_TTL = 600
# Why 10,000: the fallback only covers a Redis outage; nonces expire after NONCE_TTL anyway.
MAX_LOCAL_MARKERS = 10_000
_LABEL = b"smartpip oidc nonce v1"

log = get_logger(__name__)


class NonceRejected(Exception):
    """The nonce is malformed, not ours, expired or already used; ``str`` says which."""


@attrs.frozen
class StartedLogin:
    """What ``/v1/auth/oidc/start`` answers."""

    state: str
    nonce: str
    expires_in: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Nonces:
    """Issues and consumes nonces; keys derived from every JWT key, the first one signs."""

    def __init__(
        self,
        keys: Sequence[JwtKey],
        redis: RedisStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [hmac.new(k.secret, _LABEL, hashlib.sha256).digest() for k in keys]
        self._redis = redis
        self._clock = clock
        self._local = LocalMarkers(MAX_LOCAL_MARKERS)

    def _mac(self, key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:16])

    def start(self) -> StartedLogin:
        """A new login attempt: a state for the extension's CSRF check and a nonce."""
        expires = int(self._clock()) + NONCE_TTL
        payload = f"{_b64(secrets.token_bytes(24))}.{expires}"
        nonce = f"{payload}.{self._mac(self._keys[0], payload)}"
        return StartedLogin(state=_b64(secrets.token_bytes(16)), nonce=nonce, expires_in=NONCE_TTL)

    def check(self, nonce: str) -> int:
        """Verify that ``nonce`` is ours and unexpired; returns its expiry (Unix seconds).

        Raises:
            NonceRejected: malformed, not issued by us, or expired.
        """
        parts = nonce.split(".")
        if len(parts) != 3 or len(nonce) > 200 or not parts[1].isdigit():
            raise NonceRejected("nonce malformed")
        payload = f"{parts[0]}.{parts[1]}"
        if not any(hmac.compare_digest(self._mac(k, payload), parts[2]) for k in self._keys):
            raise NonceRejected("nonce not issued by us")
        expires = int(parts[1])
        if expires <= self._clock():
            raise NonceRejected("nonce expired")
        return expires

    async def consume(self, nonce: str) -> None:
        """Check ``nonce`` and mark it used, once across all replicas.

        Raises:
            NonceRejected: invalid, expired, or used before.
        """
        expires = self.check(nonce)
        ttl_ms = int((expires - self._clock()) * 1000)
        try:
            first = await claim_nonce(self._redis, nonce, ttl_ms=ttl_ms)
        except RedisUnavailable:
            log.warning("redis unavailable; nonce single-use checked in this process only")
            first = self._local.claim(nonce, expires=expires, now=self._clock())
        if not first:
            raise NonceRejected("nonce already used")
