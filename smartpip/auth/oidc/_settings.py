"""How to reach and trust the OpenID provider: :class:`OidcSettings`."""

from __future__ import annotations

import attrs

__all__ = ["OidcSettings"]


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
