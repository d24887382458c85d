"""The happy path of :meth:`YouTubeClient.search` against the fake, and what it sends."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import httpx

from smartpip.youtube import (
    SEARCH_FIELDS,
    VIDEOS_FIELDS,
    YouTubeClient,
    YouTubeSettings,
)
from tests.fakes.youtube import FakeYouTube
from tests.youtube.conftest import API_KEY, Calls


async def test_results_keep_order_and_join_statistics(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls
) -> None:
    videos = await client.search("lofi")

    assert [v.video_id for v in videos] == [
        "lofi0000001",
        "lofi0000002",
        "lofi0000003",
        "lofi0000004",
    ]
    first, hidden, escaped, unlisted = videos
    assert first.view_count == 98_765_432
    assert hidden.view_count is None  # viewCount left out by the owner
    assert unlisted.view_count is None  # absent from the videos.list answer
    assert escaped.view_count == 1_234
    assert first.title == "Lofi hip hop radio & beats to relax"
    assert first.description == "Chill lofi beats for study & sleep"
    assert escaped.title == "Don't stop: lofi for coding"
    assert escaped.channel_title == "Code <Radio>"
    assert hidden.channel_title == "Chillhop & Co"
    assert first.published_at == datetime(2022, 7, 12, 10, tzinfo=UTC)
    assert first.thumbnail_url == "https://i.ytimg.com/vi/lofi0000001/hqdefault.jpg"
    assert first.url == "https://www.youtube.com/watch?v=lofi0000001"
    assert fake.calls == {"search": 1, "videos": 1}
    assert calls == [("search", "ok"), ("videos", "ok")]


async def test_request_parameters(client: YouTubeClient, fake: FakeYouTube) -> None:
    await client.search("smooth jazz")

    search = fake.last_params["search"]
    assert search == {
        "part": "snippet",
        "type": "video",
        "safeSearch": "strict",
        "maxResults": "10",
        "q": "smooth jazz",
        "fields": SEARCH_FIELDS,
        "key": API_KEY,
    }
    assert "quotaUser" not in search and "userIp" not in search
    assert fake.last_params["videos"] == {
        "part": "statistics,snippet",
        "id": "jazz0000001",
        "fields": VIDEOS_FIELDS,
        "key": API_KEY,
    }


async def test_max_results_is_honoured(
    settings: YouTubeSettings, http: httpx.AsyncClient, fake: FakeYouTube
) -> None:
    client = YouTubeClient(attrs.evolve(settings, max_results=2), http)

    videos = await client.search("lofi")

    assert [v.video_id for v in videos] == ["lofi0000001", "lofi0000002"]
    assert fake.last_params["search"]["maxResults"] == "2"
    assert fake.last_params["videos"]["id"] == "lofi0000001,lofi0000002"


async def test_no_results_makes_no_videos_call(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls
) -> None:
    assert await client.search("nothing matches this") == []
    assert fake.calls == {"search": 1}
    assert calls == [("search", "ok")]


def test_settings_repr_hides_the_key() -> None:
    settings = YouTubeSettings(api_url="http://x/youtube/v3/", api_key=API_KEY)
    assert API_KEY not in repr(settings)
    assert settings.api_url == "http://x/youtube/v3"
