"""ID token checks: the unverified header, the signature via pyjwt, then the claims.

Every failure is an :class:`~._errors.OidcRejected` whose message names the check, never the
token. Time claims are checked against the caller's clock (not pyjwt's), with leeway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from smartpip.auth.oidc._errors import OidcRejected

__all__ = [
    "GOOGLE_ISSUER",
    "VerifiedIdentity",
    "accepted_issuers",
    "check_claims",
    "decode",
    "unverified_kid",
]

GOOGLE_ISSUER = "https://accounts.google.com"
# Google still signs some ID tokens with the scheme-less issuer of its early days.
_GOOGLE_LEGACY_ISSUER = "accounts.google.com"
# Why 16 KiB: Google ID tokens are about 1 KiB; our request bodies are capped at 16 KiB anyway.
_MAX_TOKEN_CHARS = 16 * 1024
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


def unverified_kid(id_token: str) -> str:
    """The ``kid`` of a plausible RS256 token's header, before any key is looked up.

    Raises:
        OidcRejected: Not a string, too long, malformed header, alg not RS256, or no kid.
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
    return kid


def decode(id_token: str, key: RSAPublicKey, *, client_id: str, issuer: str) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature, ``aud`` and ``iss`` check out.

    ``issuer`` is the one the discovery document names; its accepted forms apply.

    Raises:
        OidcRejected: A check failed, or a required claim is missing.
    """
    try:
        return jwt.decode(
            id_token,
            key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=accepted_issuers(issuer),
            # Time claims are checked in check_claims against the injected clock.
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


def check_claims(
    claims: Mapping[str, Any], *, now: float, leeway: float, client_id: str, issuer: str
) -> VerifiedIdentity:
    """The identity of decoded ``claims``, after the time, ``azp``, ``sub`` and nonce checks.

    Args:
        claims: As returned by :func:`decode`.
        now: Wall-clock time (seconds since the epoch).
        leeway: Seconds of clock skew tolerated on ``exp``, ``iat`` and ``nbf``.
        client_id: Our OAuth client ID, the only ``azp`` accepted.
        issuer: The configured issuer (trailing slash stripped), for the identity.

    Raises:
        OidcRejected: A check failed.
    """
    if _time_claim(claims, "exp") <= now - leeway:
        raise OidcRejected("id token expired")
    if _time_claim(claims, "iat") > now + leeway:
        raise OidcRejected("id token issued in the future")
    if "nbf" in claims and _time_claim(claims, "nbf") > now + leeway:
        raise OidcRejected("id token not yet valid")
    azp, aud = claims.get("azp"), claims["aud"]
    if azp is not None and azp != client_id:
        raise OidcRejected("id token authorized party mismatch")
    if azp is None and isinstance(aud, list) and len(aud) > 1:
        raise OidcRejected("id token authorized party missing")
    subject, nonce = claims["sub"], claims.get("nonce")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise OidcRejected("id token subject invalid")
    if not isinstance(nonce, str) or not nonce:
        raise OidcRejected("id token has no nonce")
    return VerifiedIdentity(issuer=issuer, subject=subject, nonce=nonce)


def _time_claim(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate claim as a float; anything else is rejected."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OidcRejected(f"id token {name} claim malformed")
    return float(value)
