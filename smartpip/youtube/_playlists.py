"""Writes to a user's YouTube playlists with their OAuth access token.

``playlists.insert`` (50 quota units) and ``playlistItems.insert`` (50 units), one attempt
each: an insert is not idempotent at Google (a retried insert whose first attempt landed adds
the video twice), and every attempt costs units, so nothing here retries. The caller decides
what an error means (:attr:`~._errors.YouTubeError.reasons` carries Google's reasons:
``playlistNotFound``, ``videoNotFound``, ``playlistContainsMaximumNumberOfVideos``...).

The access token is sent only in the ``Authorization`` header, never logged, and redacted
from Google's message should it ever echo it.
"""

from __future__ import annotations

from typing import Any

import httpx

from smartpip.youtube._errors import UpstreamFailure
from smartpip.youtube._fetch import post_json
from smartpip.youtube._settings import YouTubeSettings

__all__ = ["PlaylistClient"]


def _string(document: dict[str, Any], method: str) -> str:
    value = document.get("id")
    if not isinstance(value, str) or not value:
        raise UpstreamFailure(f"{method}: the answer has no id", method=method, retryable=False)
    return value


class PlaylistClient:
    """Creates playlists and adds videos to them, for the user whose token is given.

    Args:
        settings: URL and limits (``api_key`` is not used: these calls act for the user).
        http: The shared outbound client.
    """

    def __init__(self, settings: YouTubeSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self._http = http

    async def create_playlist(self, access_token: str, *, title: str, description: str = "") -> str:
        """Create a **private** playlist (YouTube's default is public) and return its ID.

        Raises:
            YouTubeError: Google's error (see :mod:`._errors`), or an answer without an ID.
        """
        payload = {
            "snippet": {"title": title, "description": description},
            "status": {"privacyStatus": "private"},
        }
        document = await post_json(
            self._http,
            self.settings,
            "playlists",
            {"part": "snippet,status"},
            payload,
            access_token,
        )
        return _string(document, "playlists")

    async def insert_video(self, access_token: str, *, playlist_id: str, video_id: str) -> str:
        """Add ``video_id`` at the end of ``playlist_id``; the new playlist item's ID.

        Raises:
            YouTubeError: Google's error (see :mod:`._errors`), or an answer without an ID.
        """
        payload = {
            "snippet": {
                "playlistId": playlist_id,
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
            }
        }
        document = await post_json(
            self._http,
            self.settings,
            "playlistItems",
            {"part": "snippet"},
            payload,
            access_token,
        )
        return _string(document, "playlistItems")
