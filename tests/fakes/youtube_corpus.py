"""The fixture corpus the fake YouTube searches: a few videos, some with HTML-escaped text.

Titles and descriptions are stored as YouTube sends them (escaped); tests compare against the
unescaped form.
"""

from __future__ import annotations

import attrs

__all__ = ["CORPUS", "CorpusVideo"]


@attrs.frozen
class CorpusVideo:
    """One video of the fake's corpus.

    Attributes:
        view_count: None hides the count (``viewCount`` left out of ``statistics``).
        listed: False leaves the video out of ``videos.list`` (deleted since it was indexed).
    """

    video_id: str
    title: str
    description: str
    channel_title: str
    published_at: str
    view_count: int | None = 0
    listed: bool = True


CORPUS: tuple[CorpusVideo, ...] = (
    CorpusVideo(
        "lofi0000001",
        "Lofi hip hop radio &amp; beats to relax",
        "Chill lofi beats for study &amp; sleep",
        "Lofi Girl",
        "2022-07-12T10:00:00Z",
        view_count=98_765_432,
    ),
    CorpusVideo(
        "lofi0000002",
        "Rainy lofi mix",
        "A rainy evening lofi mix",
        "Chillhop &amp; Co",
        "2023-01-05T08:30:00Z",
        view_count=None,
    ),
    CorpusVideo(
        "lofi0000003",
        "Don&#39;t stop: lofi for coding",
        "Focus music for programmers",
        "Code &lt;Radio&gt;",
        "2024-03-01T12:00:00Z",
        view_count=1_234,
    ),
    CorpusVideo(
        "lofi0000004",
        "Old lofi tape",
        "Deleted after indexing",
        "Tapes",
        "2015-05-05T05:05:05Z",
        view_count=42,
        listed=False,
    ),
    CorpusVideo(
        "jazz0000001",
        "Smooth jazz for a cafe",
        "Morning jazz &amp; coffee",
        "Cafe Music",
        "2021-11-20T09:15:00Z",
        view_count=555_000,
    ),
    CorpusVideo(
        "cook0000001",
        "Pasta in 10 minutes",
        "Quick weeknight pasta recipe",
        "Kitchen &quot;Basics&quot;",
        "2020-02-29T18:00:00Z",
        view_count=77,
    ),
)
