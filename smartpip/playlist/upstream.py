"""What the playlist feature needs from Google's OAuth endpoints, as an interface.

The playlist package may not import :mod:`smartpip.auth` (sibling features); the composition
root (:mod:`smartpip.runtime.playlist`) implements :class:`GoogleOAuth` over the sign-in's
OpenID client, and tests may pass any object with these methods.

::

    GoogleRefused       Google refused the code or the refresh token (invalid_grant...), or
                        the ID token of a consent failed verification: the user's grant is
                        not (or no longer) usable
    GoogleUnavailable   (smartpip.playlist.grants) unreachable, 5xx, malformed, or our client
                        credentials refused: nothing the user can fix
"""

from __future__ import annotations

from typing import Protocol

import attrs

__all__ = ["YOUTUBE_SCOPE", "AccessGrant", "Consent", "GoogleOAuth", "GoogleRefused"]

#: The scope the playlist write needs (manage the user's YouTube account).
YOUTUBE_SCOPE = "https://www.googleapis.com/auth/youtube"


class GoogleRefused(Exception):
    """Google refused a code or refresh token; ``str()`` names the OAuth error, never a token."""

    @property
    def invalid_grant(self) -> bool:
        """Whether the answer was ``invalid_grant`` (revoked, expired, or a bad code)."""
        return "invalid_grant" in str(self)


@attrs.frozen
class AccessGrant:
    """An access token from the token endpoint, with its lifetime and the scopes it carries."""

    access_token: str = attrs.field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]


@attrs.frozen
class Consent:
    """A redeemed consent: who granted it (verified ID token), what, and the tokens.

    Attributes:
        issuer, subject: The Google account, from the verified ID token.
        nonce: The ID token's nonce (the caller compares it with the one it sent).
        refresh_token: Present with ``access_type=offline`` and ``prompt=consent``.
        access: The access token that came with it.
    """

    issuer: str
    subject: str
    nonce: str
    refresh_token: str | None = attrs.field(repr=False)
    access: AccessGrant


class GoogleOAuth(Protocol):
    """Google's authorization, token and revocation endpoints, for our OAuth client."""

    @property
    def client_id(self) -> str:
        """Our OAuth client ID (the ``client_id`` of the authorization request)."""
        ...

    async def authorization_endpoint(self) -> str:
        """The authorization endpoint's URL (from discovery).

        Raises:
            GoogleUnavailable: Discovery cannot be read.
        """
        ...

    async def redeem(self, *, code: str, code_verifier: str, redirect_uri: str) -> Consent:
        """Exchange an authorization code (PKCE) and verify the ID token that comes with it.

        Raises:
            GoogleRefused: The code was refused, or the ID token failed a check.
            GoogleUnavailable: The endpoint could not be used.
        """
        ...

    async def refresh(self, refresh_token: str) -> AccessGrant:
        """A fresh access token for a refresh token.

        Raises:
            GoogleRefused: ``invalid_grant``: revoked or expired.
            GoogleUnavailable: The endpoint could not be used.
        """
        ...

    async def revoke(self, token: str) -> None:
        """Revoke a token (already revoked counts as done).

        Raises:
            GoogleUnavailable: The revocation endpoint could not be used.
        """
        ...
