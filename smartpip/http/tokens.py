"""Our access tokens: short-lived HS256 JWTs (RFC 9068 profile, ``typ: at+jwt``).

The first configured key signs; every configured key verifies (rotation: a token signed with
the previous key stays valid until it expires). Verification trusts nothing in the token
before the signature is checked: the algorithm is fixed (never read from the header), the
``kid`` must name a configured key (an unknown one is refused without any I/O), and the
``typ`` must be ``at+jwt``, so a Google ID token, an ``alg: none`` token or one of our opaque
refresh tokens is refused however it is dressed up.

Time claims are checked against the injected clock, not by pyjwt (which reads the wall clock
itself): one source of time for issuing and verifying, and tests can move it.

Session: a token issued at sign-in or refresh carries ``sid``, the ID of its refresh-token
family (one per sign-in; the claim name and meaning of OpenID Connect's session ID, also used
with RFC 9068 access tokens), so that logging out, or refresh-token reuse, can revoke the
family's access tokens (:mod:`smartpip.http.revocation`). ``sid`` is optional: tokens issued before
it existed, and the development tokens of ``smartpip token`` (which belong to no sign-in),
verify without it (:attr:`AccessClaims.session_id` is None) and can then only be revoked with
their user, by deleting the account; they expire within :data:`ACCESS_TOKEN_TTL` like any
other. A ``sid`` that is present must be a UUID in canonical form.

Cost: keys are parsed once in the constructor; ``verify`` does no I/O: one header parse, one
HMAC-SHA256 and one payload parse. Measured with ``timeit`` on one core of the development
machine (AMD EPYC): about 110 microseconds per ``verify`` of our 300-byte tokens (``issue``:
about 60), of which ``jwt.decode`` is about 70 and ``jwt.get_unverified_header`` about 25;
most of it is pyjwt's pure-Python base64 alphabet check, not the HMAC.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import jwt
from jwt.types import Options

__all__ = [
    "ACCESS_TOKEN_TTL",
    "SESSION_CLAIM",
    "AccessClaims",
    "AccessTokens",
    "JwtKey",
    "TokenInvalid",
]

#: Lifetime of an access token in seconds: short, since it cannot be revoked.
ACCESS_TOKEN_TTL = 900

ALGORITHM = "HS256"
#: The claim naming the token's sign-in (refresh-token family): OIDC's ``sid``.
SESSION_CLAIM = "sid"
TOKEN_TYPE = "at+jwt"
# RFC 7515 4.1.9: "application/" may be omitted from typ, and media types compare
# case-insensitively, so both spellings are accepted in any case.
_ACCEPTED_TYPES = frozenset({TOKEN_TYPE, "application/" + TOKEN_TYPE})
_DECODE_OPTIONS: Options = {
    "require": ["exp", "iat", "iss", "aud", "sub", "jti"],
    # "aud" must be exactly our audience, not a list that merely contains it.
    "strict_aud": True,
    # Checked in AccessTokens._checked_claims against the injected clock (pyjwt would read the
    # wall clock), so issuing and verifying share one source of time.
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
}
# Why 32: an HMAC key shorter than the hash output (32 bytes for SHA-256) weakens the MAC
# (RFC 7518 3.2); pyjwt would also warn on every call.
MIN_KEY_BYTES = 32
# Our tokens are about 300 characters; anything far longer is refused before parsing.
MAX_TOKEN_CHARS = 4096
# 128 random bits, URL-safe base64.
_JTI_BYTES = 16


@attrs.frozen(repr=False)
class JwtKey:
    """One signing key: ``kid`` names it in token headers, ``secret`` is the HMAC key."""

    kid: str
    secret: bytes

    def __repr__(self) -> str:
        return f"JwtKey(kid={self.kid!r}, secret=<redacted>)"


class TokenInvalid(Exception):
    """An access token was refused. ``str()`` names the reason; it never contains the token."""


@attrs.frozen
class AccessClaims:
    """What a verified access token says.

    Attributes:
        user_id: The user (the ``sub`` claim).
        jti: The token's unique ID.
        issued_at: ``iat``, seconds since the epoch.
        expires_at: ``exp``, seconds since the epoch.
        session_id: The sign-in (refresh-token family) the token was issued in (``sid``);
            None for a token without one (see the module docstring).
    """

    user_id: uuid.UUID
    jti: str
    issued_at: int
    expires_at: int
    session_id: uuid.UUID | None = None


class AccessTokens:
    """Issues and verifies access tokens with the configured keys.

    Args:
        keys: Signing keys; the first signs, all verify. Kids must be distinct.
        issuer: The ``iss`` claim issued and required.
        audience: The ``aud`` claim issued and required.
        ttl: Lifetime of issued tokens, in seconds.
        clock: Seconds since the epoch (``time.time``); injectable for tests.
        leeway: Seconds of clock skew tolerated on ``exp`` and ``iat``.

    Raises:
        ValueError: No keys, a repeated kid, a key shorter than 32 bytes, or a non-positive
            ``ttl``.
    """

    def __init__(
        self,
        keys: Sequence[JwtKey],
        *,
        issuer: str = "smartpip",
        audience: str = "smartpip-api",
        ttl: int = ACCESS_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        leeway: int = 30,
    ) -> None:
        if not keys:
            raise ValueError("at least one JWT key is required")
        secrets_by_kid: dict[str, bytes] = {}
        for key in keys:
            if key.kid in secrets_by_kid:
                raise ValueError(f"JWT key id {key.kid!r} is repeated")
            if len(key.secret) < MIN_KEY_BYTES:
                raise ValueError(f"JWT key {key.kid!r} is shorter than {MIN_KEY_BYTES} bytes")
            secrets_by_kid[key.kid] = bytes(key.secret)
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._keys: Mapping[str, bytes] = secrets_by_kid
        self._signing_kid = keys[0].kid
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._clock = clock
        self._leeway = leeway

    @property
    def ttl(self) -> int:
        """Lifetime of issued tokens, in seconds."""
        return self._ttl

    def issue(self, user_id: uuid.UUID, *, session_id: uuid.UUID | None = None) -> str:
        """A new access token for a user, signed with the first key.

        Args:
            user_id: The user (becomes ``sub``).
            session_id: The refresh-token family it is issued in (becomes ``sid``); None only
                for tokens that belong to no sign-in (development tokens).

        Returns:
            The compact JWT.
        """
        now = int(self._clock())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "iat": now,
            "exp": now + self._ttl,
            "jti": secrets.token_urlsafe(_JTI_BYTES),
        }
        if session_id is not None:
            claims[SESSION_CLAIM] = str(session_id)
        headers = {"typ": TOKEN_TYPE, "kid": self._signing_kid}
        return jwt.encode(
            claims, self._keys[self._signing_kid], algorithm=ALGORITHM, headers=headers
        )

    def verify(self, token: str) -> AccessClaims:
        """Check an access token and return its claims.

        Args:
            token: The compact JWT, as presented (without ``Bearer``).

        Returns:
            The verified claims.

        Raises:
            TokenInvalid: Malformed, not one of our access tokens (type, algorithm, key),
                bad signature, wrong issuer or audience, a required claim missing or
                malformed, a malformed ``sid``, expired, or issued in the future.
        """
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenInvalid("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("malformed token") from None
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise TokenInvalid("wrong token type")
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid("algorithm not allowed")
        kid = header.get("kid")
        secret = self._keys.get(kid) if isinstance(kid, str) else None
        if secret is None:
            raise TokenInvalid("unknown key")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidSignatureError:
            raise TokenInvalid("bad signature") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenInvalid(f"missing claim {error.claim}") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("wrong issuer") from None
        except jwt.PyJWTError:
            raise TokenInvalid("malformed token") from None
        return self._checked_claims(claims)

    def _checked_claims(self, claims: dict[str, Any]) -> AccessClaims:
        now = self._clock()
        issued_at, expires_at = claims["iat"], claims["exp"]
        nbf = claims.get("nbf")
        for value in (issued_at, expires_at, nbf):
            if value is not None and (type(value) is not int):
                raise TokenInvalid("malformed time claim")
        if expires_at <= now - self._leeway:
            raise TokenInvalid("expired")
        if issued_at > now + self._leeway:
            raise TokenInvalid("issued in the future")
        if nbf is not None and nbf > now + self._leeway:
            raise TokenInvalid("not yet valid")
        sub, jti = claims["sub"], claims["jti"]
        user_id = _canonical_uuid(sub, "subject is not a user ID")
        if not isinstance(jti, str) or not jti:
            raise TokenInvalid("malformed token ID")
        session_id = None
        if SESSION_CLAIM in claims:  # present means valid: "sid": null is refused too
            session_id = _canonical_uuid(claims[SESSION_CLAIM], "malformed session ID")
        return AccessClaims(
            user_id=user_id,
            jti=jti,
            issued_at=issued_at,
            expires_at=expires_at,
            session_id=session_id,
        )


def _canonical_uuid(value: object, reason: str) -> uuid.UUID:
    """``value`` as a UUID, if it is one in canonical form (lower-case, hyphenated)."""
    if not isinstance(value, str):
        raise TokenInvalid(reason)
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise TokenInvalid(reason) from None
    if str(parsed) != value:
        raise TokenInvalid(reason)
    return parsed
