"""The write's request and answer: ``POST /v1/youtube/playlist`` bodies, strictly validated.

YouTube video IDs are 11 characters of ``[A-Za-z0-9_-]``; playlist IDs are longer runs of the
same alphabet (``PL`` + 16 or 32, ``UU``..., at most 64 accepted here). An
``Idempotency-Key`` is 8 to 128 characters of ``[A-Za-z0-9_.:-]`` (a UUID fits).
"""

from __future__ import annotations

import hashlib
import json
import re

import attrs

from smartpip.http.bodies import matches

__all__ = [
    "IDEMPOTENCY_KEY",
    "AddBody",
    "Added",
    "fingerprint",
]

VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
PLAYLIST_ID = re.compile(r"[A-Za-z0-9_-]{10,64}")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{8,128}")


def _optional_playlist(
    instance: object, attribute: attrs.Attribute[str], value: str | None
) -> None:
    if value is not None:
        matches(PLAYLIST_ID, "must be a YouTube playlist ID (10-64 of A-Z a-z 0-9 _ -)")(
            instance, attribute, value
        )


@attrs.frozen
class AddBody:
    """``{videoId, playlistId?}``: add ``videoId`` to ``playlistId``, or to the user's Smart PiP
    playlist (created the first time) when absent."""

    video_id: str = attrs.field(
        validator=matches(VIDEO_ID, "must be a YouTube video ID (11 of A-Z a-z 0-9 _ -)")
    )
    playlist_id: str | None = attrs.field(default=None, validator=_optional_playlist)


def fingerprint(body: AddBody) -> str:
    """A digest of what ``body`` asks: equal bodies (whatever their JSON spelling) agree."""
    canonical = json.dumps([body.video_id, body.playlist_id], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class Added:
    """The outcome of a write.

    Attributes:
        playlist_id: Where the video is.
        video_id: The video.
        item_id: YouTube's playlist item for it.
        playlist_created: The Smart PiP playlist was created by this write.
        already_added: The same video was the last one added to that playlist: nothing was
            inserted now.
    """

    playlist_id: str
    video_id: str
    item_id: str | None
    playlist_created: bool = False
    already_added: bool = False

    def document(self) -> dict[str, object]:
        """The JSON answer."""
        return {
            "playlistId": self.playlist_id,
            "videoId": self.video_id,
            "itemId": self.item_id,
            "playlistCreated": self.playlist_created,
            "alreadyAdded": self.already_added,
        }
