"""RSA key pools and JWT minting for the fake OpenID provider (:mod:`tests.fakes.oidc_provider`).

Tokens are assembled by hand rather than with pyjwt, so tests can mint what pyjwt refuses to:
``alg: none``, HS256 signed with a public key's text, headers without a ``kid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["b64", "foreign_key", "provider_key", "s256", "sign_jwt"]

# Why pools: a 2048-bit RSA key takes 50-200 ms to generate. Tests of one process share keys
# (kids are random per provider, so nothing else is shared); foreign keys come from their own
# pool, so they are never published by any provider.
_PROVIDER_KEYS: list[rsa.RSAPrivateKey] = []
_FOREIGN_KEYS: list[rsa.RSAPrivateKey] = []


def _pooled(pool: list[rsa.RSAPrivateKey], index: int) -> rsa.RSAPrivateKey:
    while len(pool) <= index:
        pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return pool[index]


def provider_key(index: int) -> rsa.RSAPrivateKey:
    """The ``index``-th key of the pool that providers publish from."""
    return _pooled(_PROVIDER_KEYS, index)


def foreign_key(index: int = 0) -> rsa.RSAPrivateKey:
    """An RSA key that no provider publishes, for "signed by another key" tests."""
    return _pooled(_FOREIGN_KEYS, index)


def b64(data: bytes) -> str:
    """BASE64URL without padding, as JWTs and PKCE use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``: BASE64URL(SHA256(verifier)), unpadded."""
    return b64(hashlib.sha256(verifier.encode("utf-8")).digest())


def sign_jwt(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    alg: str,
    key: rsa.RSAPrivateKey | bytes | None,
) -> str:
    """A compact JWT of ``header`` and ``claims``, signed as ``alg`` says.

    Args:
        header: The JOSE header, serialized as given (``alg`` is not checked against it).
        claims: The payload.
        alg: ``"RS256"`` (``key`` an RSA private key), ``"HS256"`` (``key`` the secret,
            bytes) or ``"none"`` (empty signature).
        key: The signing key, as ``alg`` needs.
    """
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    data = signing_input.encode("ascii")
    if alg == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("RS256 needs an RSA private key")
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "HS256":
        if not isinstance(key, bytes):
            raise TypeError("HS256 needs the secret as bytes")
        signature = hmac.digest(key, data, "sha256")
    elif alg == "none":
        signature = b""
    else:
        raise ValueError(f"unsupported alg {alg!r}")
    return f"{signing_input}.{b64(signature)}"
