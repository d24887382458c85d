"""Consent states: single-use, bound to one user and one redirect URI, with PKCE derived.

A state is ``<random>.<expiry>.<mac>``: 128 random bits, its expiry (Unix seconds) and an HMAC
over both, the user's ID and the redirect URI, keyed by a key derived from the token keyring.
So "ours, this user's, this redirect URI, not expired" needs no storage, and the PKCE code
verifier and the ID token nonce are derived from the state with the same key: nothing is kept
between ``/connect/start`` and ``/connect/callback`` but the single-use marker.

Single use is a marker in Redis (:func:`store.nonces.claim_once`) until the state expires;
with Redis down, a per-process set (bounded, expiring), as for sign-in nonces: during the
outage a state could be used once per replica, which still needs a fresh authorization code
of the same user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable

import attrs

from smartpip.logs import get_logger
from smartpip.playlist.crypto import Keyring
from store.nonces import LocalMarkers, claim_once
from store.redis import RedisStore, RedisUnavailable

__all__ = ["STATE_TTL", "ConsentStates", "IssuedState", "StateRejected"]

# Why 10 minutes: the user may read Google's consent screen; longer only widens replay.
STATE_TTL = 600
# Why 10,000: the fallback only covers a Redis outage; states expire after STATE_TTL anyway.
MAX_LOCAL_MARKERS = 10_000
_LABEL = b"smartpip youtube consent state v1"
_MAX_STATE = 200

log = get_logger(__name__)


class StateRejected(Exception):
    """The state is malformed, not ours, another user's, expired or used; ``str`` says which."""


@attrs.frozen
class IssuedState:
    """A consent attempt: the state, what it derives, and its lifetime."""

    state: str
    code_verifier: str = attrs.field(repr=False)
    nonce: str
    expires_in: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def code_challenge(verifier: str) -> str:
    """The S256 PKCE challenge of ``verifier`` (RFC 7636 4.2)."""
    return _b64(hashlib.sha256(verifier.encode()).digest())


class ConsentStates:
    """Issues, checks and consumes consent states."""

    def __init__(
        self, keyring: Keyring, redis: RedisStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = keyring.derive(_LABEL)
        self._redis = redis
        self._clock = clock
        self._local = LocalMarkers(MAX_LOCAL_MARKERS)

    @staticmethod
    def _mac(key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:16])

    @staticmethod
    def _derived(key: bytes, purpose: str, state: str) -> str:
        return _b64(hmac.new(key, f"{purpose}|{state}".encode(), hashlib.sha256).digest())

    def issue(self, user_id: uuid.UUID, redirect_uri: str) -> IssuedState:
        """A new state for ``user_id`` coming back to ``redirect_uri``."""
        expires = int(self._clock()) + STATE_TTL
        head = f"{_b64(secrets.token_bytes(16))}.{expires}"
        key = self._keys[0]
        state = f"{head}.{self._mac(key, f'{head}.{user_id}.{redirect_uri}')}"
        return IssuedState(
            state=state,
            # 43 characters of base64url: RFC 7636's minimum length, 256 bits.
            code_verifier=self._derived(key, "pkce", state),
            nonce=self._derived(key, "nonce", state),
            expires_in=STATE_TTL,
        )

    def check(self, state: str, user_id: uuid.UUID, redirect_uri: str) -> IssuedState:
        """What ``state`` derives, if it is ours, for this user and redirect URI, unexpired.

        Raises:
            StateRejected: malformed, not issued for this user and redirect URI, or expired.
        """
        parts = state.split(".")
        if len(state) > _MAX_STATE or len(parts) != 3 or not parts[1].isdigit():
            raise StateRejected("state malformed")
        head = f"{parts[0]}.{parts[1]}"
        payload = f"{head}.{user_id}.{redirect_uri}"
        key = next(
            (k for k in self._keys if hmac.compare_digest(self._mac(k, payload), parts[2])), None
        )
        if key is None:
            raise StateRejected("state not issued to this user for this redirect URI")
        left = int(parts[1]) - self._clock()
        if left <= 0:
            raise StateRejected("state expired")
        return IssuedState(
            state=state,
            code_verifier=self._derived(key, "pkce", state),
            nonce=self._derived(key, "nonce", state),
            expires_in=int(left),
        )

    async def consume(self, state: str, user_id: uuid.UUID, redirect_uri: str) -> IssuedState:
        """Check ``state`` and mark it used, once across all replicas.

        Raises:
            StateRejected: invalid (see :meth:`check`) or used before.
        """
        issued = self.check(state, user_id, redirect_uri)
        expires = self._clock() + issued.expires_in
        try:
            first = await claim_once(
                self._redis, "consent-state", state, ttl_ms=(issued.expires_in + 1) * 1000
            )
        except RedisUnavailable:
            log.warning("redis unavailable; consent state single-use checked in this process only")
            first = self._local.claim(state, expires=expires, now=self._clock())
        if not first:
            raise StateRejected("state already used")
        return issued
