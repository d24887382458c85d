"""What a search returns (:class:`Video`) and the parsing of the two wire formats into it."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import attrs

__all__ = ["Video", "parse_search", "parse_statistics"]

_THUMBNAIL_PREFERENCE = ("high", "medium", "default")


@attrs.frozen
class Video:
    """One search result, with the API's own fields only (never a derived score).

    Attributes:
        video_id: YouTube's video ID.
        title, description, channel_title: HTML entities already unescaped. ``description`` is
            the full one from ``videos.list`` when it answered, else search's truncated one.
        published_at: Timezone-aware publication time.
        thumbnail_url: The largest of ``high``/``medium``/``default``, None if none.
        view_count: From the string counter; None when hidden by the owner or not returned.
    """

    video_id: str
    title: str
    description: str
    channel_title: str
    published_at: datetime
    thumbnail_url: str | None
    view_count: int | None

    @property
    def url(self) -> str:
        """The watch page."""
        return f"https://www.youtube.com/watch?v={self.video_id}"


class ShapeError(ValueError):
    """The answer is JSON but not the expected structure."""


def _text(mapping: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = mapping.get(name)
    if isinstance(value, str):
        return html.unescape(value)
    if required or value is not None:
        raise ShapeError(f"{name} is not a string")
    return ""


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShapeError(f"{what} is not an object")
    return value


def _items(document: dict[str, Any]) -> list[dict[str, Any]]:
    items = document.get("items", [])
    if not isinstance(items, list):
        raise ShapeError("items is not a list")
    return [_dict(item, "an item") for item in items]


def _thumbnail(snippet: dict[str, Any]) -> str | None:
    thumbnails = snippet.get("thumbnails")
    if not isinstance(thumbnails, dict):
        return None
    for size in _THUMBNAIL_PREFERENCE:
        entry = thumbnails.get(size)
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            return str(entry["url"])
    return None


def parse_search(document: dict[str, Any]) -> list[Video]:
    """The videos of a ``search.list`` answer, in its order, without statistics.

    Raises:
        ShapeError: An item lacks ``id.videoId``, a snippet, a title or a valid publish time.
    """
    videos = []
    for item in _items(document):
        video_id = _dict(item.get("id"), "id").get("videoId")
        if not isinstance(video_id, str) or not video_id:
            raise ShapeError("id.videoId is missing")
        snippet = _dict(item.get("snippet"), "snippet")
        try:
            published_at = datetime.fromisoformat(_text(snippet, "publishedAt", required=True))
        except ValueError as error:
            raise ShapeError("publishedAt is not a timestamp") from error
        if published_at.tzinfo is None:
            raise ShapeError("publishedAt has no timezone")
        videos.append(
            Video(
                video_id=video_id,
                title=_text(snippet, "title", required=True),
                description=_text(snippet, "description"),
                channel_title=_text(snippet, "channelTitle"),
                published_at=published_at,
                thumbnail_url=_thumbnail(snippet),
                view_count=None,
            )
        )
    return videos


def parse_statistics(document: dict[str, Any]) -> dict[str, tuple[int | None, str | None]]:
    """``{video_id: (view_count, full_description)}`` from a ``videos.list`` answer.

    Raises:
        ShapeError: An item has no ``id``, or a ``viewCount`` that is not a decimal string.
    """
    found: dict[str, tuple[int | None, str | None]] = {}
    for item in _items(document):
        video_id = item.get("id")
        if not isinstance(video_id, str):
            raise ShapeError("id is not a string")
        statistics = item.get("statistics")
        raw = statistics.get("viewCount") if isinstance(statistics, dict) else None
        if raw is not None and not (isinstance(raw, str) and raw.isascii() and raw.isdecimal()):
            raise ShapeError("viewCount is not a decimal string")
        snippet = item.get("snippet")
        description = snippet.get("description") if isinstance(snippet, dict) else None
        found[video_id] = (
            int(raw) if raw is not None else None,
            html.unescape(description) if isinstance(description, str) else None,
        )
    return found
