"""An in-memory :class:`~smartpip.playlist.grants.Grants` for the write's tests.

It stands for the consent half (stored, encrypted refresh tokens; Google's token endpoint):
:meth:`FakeGrants.connect` gives a user a grant, and every access token it hands out is
registered with the fake YouTube (:class:`~tests.fakes.youtube_playlists.FakePlaylists`) as
acting for that user. Tests switch failures on: a revoked grant, Google unavailable.
"""

from __future__ import annotations

import itertools
import uuid

from smartpip.playlist.grants import GoogleUnavailable, GrantRevoked, NotConnected
from tests.fakes.youtube_playlists import FakePlaylists

__all__ = ["FakeGrants"]

#: Access tokens start like Google's, so a leak into a log or an answer is easy to spot.
TOKEN_PREFIX = "ya29.fake-access-token-"


class FakeGrants:
    """Satisfies the ``Grants`` protocol.

    Attributes:
        current: Each connected user's current access token.
        revoked: Users whose grant Google revokes at the next refresh.
        unavailable: Google's token endpoint is down.
        calls: ``(user_id, refresh)`` of every ``access_token`` call.
        issued: Every access token handed out.
        disconnected: ``(user_id, reason)`` of every ``disconnect`` call.
    """

    def __init__(self, youtube: FakePlaylists) -> None:
        self._youtube = youtube
        self.current: dict[uuid.UUID, str] = {}
        self.revoked: set[uuid.UUID] = set()
        self.unavailable = False
        self.calls: list[tuple[uuid.UUID, bool]] = []
        self.issued: list[str] = []
        self.disconnected: list[tuple[uuid.UUID, str]] = []
        self._serial = itertools.count(1)

    def connect(self, user_id: uuid.UUID) -> str:
        """Give ``user_id`` a grant; its first access token."""
        return self._issue(user_id)

    def expire(self, user_id: uuid.UUID) -> None:
        """Make YouTube refuse the user's current token (401), as after it expired."""
        self._youtube.tokens.pop(self.current[user_id], None)

    def _issue(self, user_id: uuid.UUID) -> str:
        token = f"{TOKEN_PREFIX}{next(self._serial)}-{uuid.uuid4().hex}"
        self.current[user_id] = token
        self.issued.append(token)
        self._youtube.tokens[token] = str(user_id)
        return token

    async def access_token(self, user_id: uuid.UUID, *, refresh: bool = False) -> str:
        self.calls.append((user_id, refresh))
        if self.unavailable:
            raise GoogleUnavailable("token endpoint: HTTP 503")
        if user_id not in self.current:
            raise NotConnected(str(user_id))
        if refresh:
            if user_id in self.revoked:
                del self.current[user_id]
                raise GrantRevoked("invalid_grant")
            return self._issue(user_id)
        return self.current[user_id]

    async def disconnect(self, user_id: uuid.UUID, *, reason: str) -> None:
        self.disconnected.append((user_id, reason))
        self.current.pop(user_id, None)
