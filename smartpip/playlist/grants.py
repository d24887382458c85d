"""The contract between the consent half (connect, store, refresh, revoke) and the write half
(``POST /v1/youtube/playlist``): the write asks :class:`Grants` for an access token and tells it
when Google rejected one."""

from __future__ import annotations

import uuid
from typing import Protocol

__all__ = ["GoogleUnavailable", "GrantRevoked", "Grants", "NotConnected"]


class NotConnected(Exception):
    """The user has no stored grant (never connected, disconnected, or deleted)."""


class GrantRevoked(NotConnected):
    """Google answered ``invalid_grant`` (revoked or expired): the stored grant was deleted, so
    the user is now disconnected and must consent again."""


class GoogleUnavailable(Exception):
    """Google's token endpoint did not give a usable answer (network, 5xx, malformed, slow)."""


class Grants(Protocol):
    """Access tokens for a user's stored grant. Access tokens live only in memory, per process,
    until shortly before they expire."""

    async def access_token(self, user_id: uuid.UUID, *, refresh: bool = False) -> str:
        """A valid access token with the YouTube scope for ``user_id``.

        Args:
            user_id: the signed-in user.
            refresh: ignore a cached token and refresh now (after YouTube answered 401 with the
                cached one).

        Raises:
            NotConnected: no stored grant.
            GrantRevoked: Google answered ``invalid_grant``; the grant was deleted.
            GoogleUnavailable: the token endpoint could not be used.
        """
        ...

    async def disconnect(self, user_id: uuid.UUID, *, reason: str) -> None:
        """Delete the user's stored grant because it is of no use any more (YouTube refused a
        freshly refreshed token): the user is disconnected and must consent again. The audit
        log records ``reason``; a user without a grant is left as is.

        Raises:
            store.errors.DatabaseUnavailable: Postgres is not answering.
        """
        ...
