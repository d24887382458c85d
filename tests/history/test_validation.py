"""Validation of a watched video, without I/O: every bad field is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartpip.history.model import (
    KNOWN_PROVIDERS,
    HistoryBody,
    InvalidEntry,
    format_time,
    select_providers,
    validate_entry,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

GOOD = {
    "youtube": ("dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    "vimeo": ("76979871", "https://vimeo.com/76979871"),
    "twitch": ("v1234567890", "https://www.twitch.tv/videos/1234567890"),
    "dailymotion": ("x8abc12", "https://www.dailymotion.com/video/x8abc12"),
}


def body(**fields: str | None) -> HistoryBody:
    values: dict[str, str | None] = {
        "provider": "youtube",
        "video_id": "dQw4w9WgXcQ",
        "title": "A title",
        "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "watched_at": None,
    }
    values.update(fields)
    return HistoryBody(**values)  # type: ignore[arg-type]


def fields(entry: HistoryBody, **kwargs: object) -> list[str]:
    with pytest.raises(InvalidEntry) as caught:
        validate_entry(entry, now=NOW, **kwargs)  # type: ignore[arg-type]
    return [error.field for error in caught.value.errors]


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_each_provider_accepts_its_videos(provider: str) -> None:
    video_id, url = GOOD[provider]
    row = validate_entry(body(provider=provider, video_id=video_id, url=url), now=NOW)
    assert (row.provider, row.video_id, row.url, row.watched_at) == (provider, video_id, url, NOW)


def test_title_is_trimmed_and_time_normalised_to_utc() -> None:
    row = validate_entry(
        body(title="  Hello 👩\u200d💻  ", watched_at="2024-06-01T14:00:00.123456789+02:00"),
        now=NOW,
    )
    assert row.title == "Hello 👩\u200d💻"
    assert row.watched_at == datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert format_time(row.watched_at) == "2024-06-01T12:00:00.123456Z"


def test_future_within_skew_is_accepted() -> None:
    soon = format_time(NOW + timedelta(minutes=4))
    assert validate_entry(body(watched_at=soon), now=NOW).watched_at > NOW


@pytest.mark.parametrize(
    ("provider", "video_id"),
    [
        ("youtube", "short"),
        ("youtube", "dQw4w9WgXcQx"),
        ("youtube", "dQw4w9WgXc!"),
        ("vimeo", "abc"),
        ("twitch", "no"),
        ("twitch", "bad-name!"),
        ("dailymotion", "x8-abc"),
        ("dailymotion", ""),
    ],
)
def test_bad_video_id_per_provider(provider: str, video_id: str) -> None:
    url = GOOD[provider][1]
    assert fields(body(provider=provider, video_id=video_id, url=url)) == ["videoId"]


@pytest.mark.parametrize(
    "url",
    [
        "http://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "javascript:alert(1)",
        "https://youtube.com.evil.example/watch",
        "https://evil.example/www.youtube.com",
        "https://www.youtube.com@evil.example/",
        "https://user:pw@www.youtube.com/",
        "https://127.0.0.1/watch",
        "https://[::1]/watch",
        "https://169.254.169.254/latest",
        "https://localhost/watch",
        "https://www.youtube.com:8443/watch",
        "https://www.youtube.com:notaport/",
        "https://www.youtube.com./watch",
        "https://vimeo.com/1",
        "https://www.youtube.com\\@evil.example/",
        " https://www.youtube.com/",
        "https://www.youtube.com/" + "a" * 2048,
        "",
    ],
)
def test_bad_url(url: str) -> None:
    assert fields(body(url=url)) == ["url"]


def test_port_443_is_fine() -> None:
    validate_entry(body(url="https://youtu.be:443/dQw4w9WgXcQ"), now=NOW)


@pytest.mark.parametrize(
    "title", ["", "   ", "x" * 301, "a\x07b", "tab\there", "rtl\u202eoverride", "line\u2028sep"]
)
def test_bad_title(title: str) -> None:
    assert fields(body(title=title)) == ["title"]


@pytest.mark.parametrize(
    "watched_at",
    [
        "yesterday",
        "2024-06-01",
        "2024-06-01T12:00:00",  # no time zone
        "2024-13-01T12:00:00Z",
        "2024-06-01T12:00:00+25:00",
        "2024-06-01T12:00:00+05:99",  # fromisoformat alone reads this as +06:39
        "2024-06-01T12:00:00+24:00",
        "\u0662\u0660\u0662\u0664-06-01T12:00:00Z",  # Arabic-Indic digits
        format_time(NOW + timedelta(minutes=6)),
        "2004-12-31T23:59:59Z",
    ],
)
def test_bad_watched_at(watched_at: str) -> None:
    assert fields(body(watched_at=watched_at)) == ["watchedAt"]


def test_unknown_provider_and_every_other_bad_field_reported_together() -> None:
    assert fields(body(provider="netflix", title="", watched_at="x")) == [
        "provider",
        "title",
        "watchedAt",
    ]
    assert fields(body(video_id="x", url="http://x", title="")) == ["videoId", "url", "title"]


def test_configured_allow_list() -> None:
    only_vimeo = select_providers(["vimeo"])
    assert fields(body(), providers=only_vimeo) == ["provider"]
    assert set(select_providers(["youtube", " vimeo"])) == {"youtube", "vimeo"}
    with pytest.raises(ValueError, match="netflix"):
        select_providers(["youtube", "netflix"])
    with pytest.raises(ValueError):
        select_providers([])
    assert set(KNOWN_PROVIDERS) == {"youtube", "vimeo", "twitch", "dailymotion"}
