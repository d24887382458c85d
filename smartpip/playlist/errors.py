"""The write's domain errors; the routes map each to a problem (``write_routes``).

::

    WriteFailed              ``outcome``: the label of ``playlist_writes_total``
    ├── NotConnectedError    no usable grant (``reason``): ask the user for consent
    ├── WriteBusy            another write for the user is in progress
    ├── KeyReused            the Idempotency-Key was used for another request
    ├── PlaylistFull         playlistContainsMaximumNumberOfVideos
    ├── VideoGone            videoNotFound
    ├── PlaylistGone         playlistNotFound (a playlist the client named)
    ├── PlaylistRefused      playlistItemsNotAccessible, forbidden...
    ├── WriteUnavailable     Redis, Google's token endpoint, YouTube's rate limit (``retry_after``)
    └── UpstreamError        YouTube answered unusably

The budget's refusals are :class:`~smartpip.playlist.budget.BudgetRefused`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "KeyReused",
    "NotConnectedError",
    "PlaylistFull",
    "PlaylistGone",
    "PlaylistRefused",
    "UpstreamError",
    "VideoGone",
    "WriteBusy",
    "WriteFailed",
    "WriteUnavailable",
]


class WriteFailed(Exception):
    """Base of the write's errors; ``outcome`` is the metric label."""

    outcome: ClassVar[str] = "upstream_error"


class NotConnectedError(WriteFailed):
    """No usable grant: ``reason`` is ``not_connected`` (never connected or disconnected),
    ``consent_revoked`` (Google revoked the grant; it was deleted) or ``consent_required``
    (YouTube refused a fresh token, or the grant lacks the YouTube scope)."""

    outcome = "not_connected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WriteBusy(WriteFailed):
    """Another write for this user is in progress."""

    outcome = "busy"


class KeyReused(WriteFailed):
    """The ``Idempotency-Key`` was used for a different request."""

    outcome = "key_reused"


class PlaylistFull(WriteFailed):
    """YouTube: ``playlistContainsMaximumNumberOfVideos``."""

    outcome = "playlist_full"


class VideoGone(WriteFailed):
    """YouTube: ``videoNotFound`` (no such video, or private)."""

    outcome = "video_not_found"


class PlaylistGone(WriteFailed):
    """YouTube: ``playlistNotFound`` for the playlist the client named."""

    outcome = "playlist_not_found"


class PlaylistRefused(WriteFailed):
    """YouTube: the user may not add to that playlist (``playlistItemsNotAccessible``...)."""

    outcome = "playlist_forbidden"


class WriteUnavailable(WriteFailed):
    """Cannot write now: ``reason`` ``redis``, ``google`` (token endpoint) or
    ``rate_limited`` (YouTube's short-term limit); ask again after ``retry_after`` s."""

    outcome = "unavailable"

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class UpstreamError(WriteFailed):
    """YouTube answered unusably (5xx, timeout, malformed, an unexpected refusal)."""

    outcome = "upstream_error"
