"""A local YouTube Data API for playlist writes: a real HTTP server on loopback, real wire format.

Routes (the user's OAuth access token in ``Authorization: Bearer``; no API key):

- ``POST /youtube/v3/playlists?part=snippet,status``: creates a ``youtube#playlist`` owned by
  the token's user, with the body's ``snippet.title``/``description`` and
  ``status.privacyStatus`` (``public`` when absent, as YouTube);
- ``POST /youtube/v3/playlistItems?part=snippet``: appends
  ``snippet.resourceId.videoId`` to ``snippet.playlistId`` and answers the
  ``youtube#playlistItem``.

Errors in Google's envelope: 401 ``authError`` (unknown token, status ``UNAUTHENTICATED``),
404 ``playlistNotFound`` (unknown playlist, or another user's private one), 404
``videoNotFound`` (IDs in :attr:`missing_videos`), 403
``playlistContainsMaximumNumberOfVideos`` (:attr:`max_items` reached), and whatever a test
queues with :meth:`fail_next` (``quotaExceeded``, ``insufficientPermissions``,
``backendError``...). Every request is counted and recorded first, as Google charges quota
for failed requests too.
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import attrs
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

__all__ = ["FakePlaylists", "Playlist", "Recorded"]

_PREFIX = "/youtube/v3/"
_METHODS = ("playlists", "playlistItems")
_Response = tuple[int, bytes]
# The envelopes' details, as Google sends them (reason, domain, message, extra members).
_ERRORS: dict[str, tuple[int, str, str, dict[str, Any]]] = {
    "authError": (
        401,
        "global",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login"
        " cookie or other valid authentication credential.",
        {"status": "UNAUTHENTICATED"},
    ),
    "playlistNotFound": (
        404,
        "youtube.playlistItem",
        "The playlist identified with the request's playlistId parameter cannot be found.",
        {},
    ),
    "videoNotFound": (404, "youtube.playlistItem", "Video not found.", {}),
    "playlistContainsMaximumNumberOfVideos": (
        403,
        "youtube.playlistItem",
        "The playlist already contains the maximum allowed number of items.",
        {},
    ),
    "playlistItemsNotAccessible": (
        403,
        "youtube.playlistItem",
        "The request is not properly authorized to insert the specified playlist item.",
        {},
    ),
    "quotaExceeded": (
        403,
        "youtube.quota",
        "The request cannot be completed because you have exceeded your quota.",
        {},
    ),
    "insufficientPermissions": (
        403,
        "global",
        "Request had insufficient authentication scopes.",
        {
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                }
            ],
        },
    ),
    "rateLimitExceeded": (429, "youtube.quota", "Too many requests.", {}),
    "backendError": (503, "global", "Backend Error", {}),
}


def _error(reason: str) -> _Response:
    status, domain, message, more = _ERRORS[reason]
    errors = [{"message": message, "domain": domain, "reason": reason}]
    envelope = {"error": {"code": status, "message": message, "errors": errors, **more}}
    return status, json.dumps(envelope).encode()


@attrs.define
class Playlist:
    """A playlist of the fake: its owner (a user label), title, privacy and video IDs."""

    owner: str
    title: str
    description: str
    privacy: str
    videos: list[str] = attrs.field(factory=list)


@attrs.frozen
class Recorded:
    """One request as received."""

    method: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any


class FakePlaylists:
    """The playlist part of the YouTube Data API, served by a
    :class:`~tests.fakes.youtube.FakeYouTube` beside search (one base URL, as Google's)::

        youtube = FakeYouTube()
        youtube.playlists = playlists = FakePlaylists()
        base_url = await nursery.start(youtube.run)

    Attributes:
        tokens: Valid access token -> the user label it acts for.
        playlists: Playlist ID -> :class:`Playlist`.
        missing_videos: Video IDs answered ``videoNotFound``.
        max_items: Items a playlist holds before ``playlistContainsMaximumNumberOfVideos``.
        calls: Requests received per method.
        requests: Every request received, in order.
        hold: When set to an event, requests wait for it before being answered.
        adopt_unknown: An unknown playlist ID is taken as one of the caller's own (created on
            first use), for runs that generate random IDs (the contract fuzz run).
        token_owner: Asked for a token not in ``tokens`` (None: refused), so that the access
            tokens another fake issues (Google's token endpoint) can be honoured.
    """

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.playlists: dict[str, Playlist] = {}
        self.missing_videos: set[str] = set()
        self.max_items = 5000
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[Recorded] = []
        self.hold: trio.Event | None = None
        self.adopt_unknown = False
        self.token_owner: Callable[[str], str | None] = lambda token: None
        self._queued: dict[str, list[str]] = {method: [] for method in _METHODS}
        self._ids = itertools.count(1)

    def fail_next(self, method: str, *reasons: str) -> None:
        """Answer the next requests of ``method`` with these error reasons, in order."""
        self._queued[method].extend(reasons)

    def owned_by(self, user: str) -> dict[str, Playlist]:
        """The playlists of ``user``."""
        return {pid: p for pid, p in self.playlists.items() if p.owner == user}

    async def serve_http(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Answer one HTTP request (:class:`~tests.fakes.youtube.FakeYouTube` hands it the
        ``POST`` requests it gets when given this fake)."""
        body = b""
        while True:
            event = await receive()
            chunk = event.get("body", b"")
            body += chunk if isinstance(chunk, bytes) else b""
            if not event.get("more_body"):
                break
        params = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, payload = await self._handle(scope["method"], scope["path"], params, headers, body)
        raw = [(b"content-type", b"application/json; charset=UTF-8")]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _handle(
        self,
        verb: str,
        path: str,
        params: dict[str, str],
        headers: dict[str, str],
        raw: bytes,
    ) -> _Response:
        method = path.removeprefix(_PREFIX)
        if verb != "POST" or method not in _METHODS:
            return 404, b'{"error":{"code":404,"message":"Not Found"}}'
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.calls[method] += 1
        self.requests.append(Recorded(method, params, headers, body))
        if self.hold is not None:
            await self.hold.wait()
        if self._queued[method]:
            return _error(self._queued[method].pop(0))
        token = headers.get("authorization", "").removeprefix("Bearer ")
        user = self.tokens.get(token) or self.token_owner(token)
        if user is None:
            return _error("authError")
        if not isinstance(body, dict) or not isinstance(body.get("snippet"), dict):
            return 400, b'{"error":{"code":400,"message":"Bad Request","errors":[]}}'
        if method == "playlists":
            return self._create(user, params, body)
        return self._insert(user, body["snippet"])

    def _create(self, user: str, params: dict[str, str], body: dict[str, Any]) -> _Response:
        snippet = body["snippet"]
        status = body.get("status") if "status" in params.get("part", "").split(",") else None
        privacy = status.get("privacyStatus", "public") if isinstance(status, dict) else "public"
        playlist_id = f"PLfake{next(self._ids):026d}"
        playlist = Playlist(user, snippet.get("title", ""), snippet.get("description", ""), privacy)
        self.playlists[playlist_id] = playlist
        answer = {
            "kind": "youtube#playlist",
            "etag": f"etag-{playlist_id}",
            "id": playlist_id,
            "snippet": {
                "publishedAt": "2024-01-01T00:00:00Z",
                "channelId": f"UC{user}",
                "title": playlist.title,
                "description": playlist.description,
                "channelTitle": user,
                "localized": {"title": playlist.title, "description": playlist.description},
            },
            "status": {"privacyStatus": privacy},
        }
        return 200, json.dumps(answer).encode()

    def _insert(self, user: str, snippet: dict[str, Any]) -> _Response:
        playlist_id = snippet.get("playlistId", "")
        if (
            self.adopt_unknown
            and isinstance(playlist_id, str)
            and playlist_id not in self.playlists
        ):
            self.playlists[playlist_id] = Playlist(user, "adopted", "", "private")
        playlist = self.playlists.get(playlist_id)
        if playlist is None or (playlist.owner != user and playlist.privacy == "private"):
            return _error("playlistNotFound")
        if playlist.owner != user:
            return _error("playlistItemsNotAccessible")
        resource = snippet.get("resourceId") or {}
        video_id = resource.get("videoId", "")
        if resource.get("kind") != "youtube#video" or video_id in self.missing_videos:
            return _error("videoNotFound")
        if len(playlist.videos) >= self.max_items:
            return _error("playlistContainsMaximumNumberOfVideos")
        playlist.videos.append(video_id)
        item_id = f"UExm{next(self._ids):030d}"
        answer = {
            "kind": "youtube#playlistItem",
            "etag": f"etag-{item_id}",
            "id": item_id,
            "snippet": {
                "publishedAt": "2024-01-01T00:00:00Z",
                "channelId": f"UC{user}",
                "title": f"Video {video_id}",
                "playlistId": snippet["playlistId"],
                "position": len(playlist.videos) - 1,
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
            },
        }
        return 200, json.dumps(answer).encode()
