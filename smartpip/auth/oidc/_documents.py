"""The two upstream documents, parsed: the discovery document and the key set (JWKS).

Both parsers raise :class:`~._errors.FetchFailed` for a document that cannot serve, so the
cache treats it like a failed fetch (keeps the last good copy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from smartpip.auth.oidc._errors import FetchFailed

__all__ = ["Discovery", "parse_discovery", "parse_jwks"]

# Why 2048 bits: the minimum RSA size of RFC 7518 3.3; Google's keys are 2048 bits.
_MIN_RSA_BITS = 2048


@attrs.frozen
class Discovery:
    """What we use of the discovery document."""

    issuer: str
    jwks_uri: str
    token_endpoint: str
    revocation_endpoint: str | None
    authorization_endpoint: str | None = None


def parse_discovery(document: Mapping[str, Any], issuer: str) -> Discovery:
    """The discovery document of ``issuer`` (trailing slash stripped).

    Raises:
        FetchFailed: It names another issuer, or lacks a valid endpoint URL.
    """
    named = document.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer:
        raise FetchFailed("discovery names another issuer than the configured one")
    return Discovery(
        issuer=named,
        jwks_uri=_endpoint(document, "jwks_uri"),
        token_endpoint=_endpoint(document, "token_endpoint"),
        revocation_endpoint=_optional_endpoint(document, "revocation_endpoint"),
        authorization_endpoint=_optional_endpoint(document, "authorization_endpoint"),
    )


def _endpoint(document: Mapping[str, Any], name: str) -> str:
    url = document.get(name)
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise FetchFailed(f"discovery has no valid {name}")
    return url


def _optional_endpoint(document: Mapping[str, Any], name: str) -> str | None:
    return None if document.get(name) is None else _endpoint(document, name)


def parse_jwks(document: Mapping[str, Any]) -> dict[str, RSAPublicKey]:
    """The RS256 signature keys of a JWKS by kid; others (and private keys) are skipped."""
    raw = document.get("keys")
    if not isinstance(raw, list):
        raise FetchFailed("the key set has no key list")
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
        raise FetchFailed("the key set holds no usable RS256 key")
    return keys
