"""The keyring that seals Google refresh tokens at rest (AES-256-GCM, cryptography's AESGCM).

A sealed token is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``, stored with the ID of
the key that sealed it. The associated data binds it to its row's user and to that key ID, so a
ciphertext copied into another user's row, or relabelled with another key ID, does not open.

``SMARTPIP_TOKEN_ENCRYPTION_KEYS`` is comma-separated ``kid:key`` pairs, each key 32 bytes in
base64url (padding optional): the first seals, all open (rotation: put a new key first, run
``smartpip playlist rotate-keys``, then drop the old one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_BYTES",
    "Keyring",
    "SealedToken",
    "TokenKey",
    "UnknownKey",
    "Unsealable",
    "generate_key",
    "parse_keyring",
]

#: AES-256.
KEY_BYTES = 32
# 96-bit random nonces, GCM's native size; a key seals far fewer than 2**32 tokens.
_NONCE_BYTES = 12
_AAD_LABEL = b"smartpip oauth refresh token v1"
_KID = re.compile(r"[A-Za-z0-9._-]{1,32}")
# Why 16: a random 32-byte key has about 30 distinct byte values; a key with few is a
# placeholder (all zeros, "aaaa...") that happens to have the right length.
_MIN_DISTINCT_BYTES = 16


class Unsealable(Exception):
    """The sealed token does not open: wrong user, wrong or tampered key ID, or corrupted."""


class UnknownKey(Unsealable):
    """The token was sealed under a key ID this keyring does not hold."""


@attrs.frozen
class TokenKey:
    """One AES-256 key and its ID."""

    kid: str
    key: bytes = attrs.field(repr=False)

    @property
    def weak(self) -> bool:
        """Whether the key looks like a placeholder rather than 32 random bytes."""
        return len(set(self.key)) < _MIN_DISTINCT_BYTES


@attrs.frozen
class SealedToken:
    """A sealed token as stored: the key ID and ``nonce || ciphertext || tag``."""

    kid: str
    blob: bytes = attrs.field(repr=False)


def _aad(user_id: uuid.UUID, kid: str) -> bytes:
    return b"|".join((_AAD_LABEL, user_id.bytes, kid.encode()))


@attrs.frozen
class Keyring:
    """The configured keys; the first seals, all open."""

    keys: tuple[TokenKey, ...] = attrs.field(repr=lambda keys: f"<{len(keys)} keys>")

    def __attrs_post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")

    @property
    def current(self) -> TokenKey:
        """The key that seals."""
        return self.keys[0]

    def seal(self, user_id: uuid.UUID, token: str) -> SealedToken:
        """Encrypt ``token`` for ``user_id``'s row under the current key."""
        key = self.current
        nonce = secrets.token_bytes(_NONCE_BYTES)
        blob = AESGCM(key.key).encrypt(nonce, token.encode(), _aad(user_id, key.kid))
        return SealedToken(key.kid, nonce + blob)

    def open(self, user_id: uuid.UUID, sealed: SealedToken) -> str:
        """The token sealed in ``user_id``'s row.

        Raises:
            UnknownKey: No key has ``sealed.kid``.
            Unsealable: It does not authenticate (another user's row, tampered, corrupted).
        """
        key = next((k for k in self.keys if k.kid == sealed.kid), None)
        if key is None:
            raise UnknownKey(f"no key {sealed.kid!r} in SMARTPIP_TOKEN_ENCRYPTION_KEYS")
        nonce, blob = sealed.blob[:_NONCE_BYTES], sealed.blob[_NONCE_BYTES:]
        try:
            plain = AESGCM(key.key).decrypt(nonce, blob, _aad(user_id, sealed.kid))
        except (InvalidTag, ValueError):
            raise Unsealable("the sealed token does not authenticate") from None
        return plain.decode()

    def derive(self, label: bytes) -> list[bytes]:
        """Per-purpose MAC keys derived from every key (the current one first)."""
        return [hmac.new(k.key, label, hashlib.sha256).digest() for k in self.keys]


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _decode_key(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):  # urlsafe_b64decode skips stray characters silently
        raise ValueError("is not base64url")
    text = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("is not base64url") from None


def parse_keyring(raw: str) -> tuple[Keyring | None, list[str]]:
    """Parse ``kid:key,kid:key``; returns the keyring (None if no entry was valid) and the
    problems found, each a phrase to follow the variable's name (never a key)."""
    keys: list[TokenKey] = []
    problems: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        kid, sep, text = item.partition(":")
        if not sep or not _KID.fullmatch(kid) or not text:
            problems.append("entries must be kid:key (kid 1-32 of [A-Za-z0-9._-])")
            continue
        if any(k.kid == kid for k in keys):
            problems.append(f"repeats the key id {kid!r}")
            continue
        try:
            key = _decode_key(text)
        except ValueError as error:
            problems.append(f"key {kid!r} {error}")
            continue
        if len(key) != KEY_BYTES:
            problems.append(f"key {kid!r} must be {KEY_BYTES} bytes (base64url), not {len(key)}")
            continue
        keys.append(TokenKey(kid, key))
    return (Keyring(tuple(keys)) if keys else None), problems


def generate_key() -> str:
    """A new random key in the variable's encoding (base64url, no padding)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode()
