"""The document's request schemas accept exactly what the server's validators accept.

For each rule JSON Schema can state, the document's schema (as a JSON Schema validator reads
it) and the server's own validation must agree on every input, valid or not. Inputs are drawn
near the edges: look-alike hosts, odd cases and ports, white space and control characters at
both ends of a title, lengths around the limits, malformed dates. Rules the schema cannot state
(a time relative to the server's clock, a query with nothing searchable, 8 KiB of site flags)
are left to the descriptions, and kept out of the comparison here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smartpip.history.model import KNOWN_PROVIDERS, HistoryBody, InvalidEntry, validate_entry
from smartpip.http.public import load_openapi
from smartpip.suggest import QueryRejected, normalize_query

DOCUMENT: dict[str, Any] = json.loads(load_openapi())
SCHEMAS = DOCUMENT["components"]["schemas"]
# A clock far ahead, so that no syntactically valid time is refused for being in the future.
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
SYNTAX = "must be an RFC 3339 date-time with a time zone"
GOOD = {
    "youtube": ("dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    "vimeo": ("76979871", "https://vimeo.com/76979871"),
    "twitch": ("v1234567890", "https://www.twitch.tv/videos/1234567890"),
    "dailymotion": ("x8abc12", "https://www.dailymotion.com/video/x8abc12"),
}


def accepts(schema: dict[str, Any], value: Any) -> bool:
    validator = jsonschema_rs.validator_for({**schema, "components": DOCUMENT["components"]})
    return validator.is_valid(value)


def refused_fields(provider: str = "youtube", **fields: str | None) -> set[str]:
    """The fields the server's history validation refuses."""
    video_id, url = GOOD.get(provider, GOOD["youtube"])
    values: dict[str, Any] = {
        "provider": provider,
        "video_id": video_id,
        "title": "A title",
        "url": url,
        "watched_at": None,
        **fields,
    }
    try:
        validate_entry(HistoryBody(**values), now=FAR_FUTURE)
    except InvalidEntry as invalid:
        return {error.field for error in invalid.errors}
    return set()


def entry_property(provider: str, name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/HistoryEntry{provider.capitalize()}/properties/{name}"}


# Characters that sit on the edges of the rules: white space of every kind (some of it is
# control characters), format characters, joiners, separators, ASCII punctuation and letters.
EDGES = (
    "\t\n\x0b\x0c\r\x1c\x1f \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
    "\x00\x07\x7f\x9f\xad\u200b\u200c\u200d\u200e\u202e\u2060\ufeff\U000e0001"
)
CHARACTERS = st.characters(exclude_categories=["Cs"])  # lone surrogates: JSON refuses them
EDGE_CHARACTERS = st.sampled_from(EDGES + "aZ09.-_~:/?#@[]%\\\"' \u00e9\U0001f600")
TEXT = st.text(EDGE_CHARACTERS | CHARACTERS, max_size=12)


def pick(usual: list[str], edges: list[str]) -> st.SearchStrategy[str]:
    """Mostly a usual value, often enough an edge one."""
    return st.sampled_from(usual) | st.sampled_from(edges)


@st.composite
def titles(draw: st.DrawFn) -> str:
    ends = st.text(st.sampled_from(EDGES), max_size=3)
    core_length = draw(st.sampled_from([0, 1, 2, 298, 299, 300, 301]) | st.integers(0, 20))
    core = draw(
        st.text(
            st.sampled_from("ab \u00e9\u200d" + EDGES), min_size=core_length, max_size=core_length
        )
    )
    return draw(ends) + core + draw(ends)


@given(titles() | TEXT)
@example(" \x1cTitle\x85 ")  # control characters that are also white space, trimmed
@example("\x85Title")
@example("Title\u2029")
@example("a" * 300 + "\u3000")
@example("a\u2028b")
def test_title(title: str) -> None:
    schema_says = accepts(entry_property("youtube", "title"), title)
    assert schema_says == ("title" not in refused_fields(title=title))


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(pick(["https"], ["HTTPS", "hTtPs", "http", "javascript", "", "https+x"]))
    separator = draw(pick(["://"], [":/", ":", "//", ":///"]))
    host = draw(
        pick(
            ["www.youtube.com", "youtu.be", "vimeo.com", "www.twitch.tv", "dai.ly"],
            ["WWW.YouTube.COM", "m.youtube.com", "music.youtube.com", "youtube.com.",
             "youtube.com.evil.example", "player.vimeo.com", "www.dailymotion.com",
             "[www.youtube.com]", "me@www.youtube.com", "youtube%2Ecom", "", "127.0.0.1"],
        )
    )  # fmt: skip
    port = draw(pick([""], [":", ":443", ":0443", ":80", ":+443", ":99999", ":443:443", ":0"]))
    rest = draw(st.text(st.sampled_from("/?#azAZ09%@:[]\\ ~!\u00e9\t"), max_size=6))
    return scheme + separator + host + port + rest


@pytest.mark.parametrize("provider", sorted(KNOWN_PROVIDERS))
@given(url=urls() | TEXT)
@example(url="https://www.youtube.com")
@example(url="https://youtu.be:0443/x")
@example(url="https://youtu.be:/x")
@example(url="https://" + "a" * 2100)
def test_url(provider: str, url: str) -> None:
    schema_says = accepts(entry_property(provider, "url"), url)
    assert schema_says == ("url" not in refused_fields(provider, url=url))


@pytest.mark.parametrize("provider", sorted(KNOWN_PROVIDERS))
@given(video_id=st.text(st.sampled_from("aZ09_-v!\u0660\n"), max_size=34) | TEXT)
def test_video_id(provider: str, video_id: str) -> None:
    schema_says = accepts(entry_property(provider, "videoId"), video_id)
    assert schema_says == ("videoId" not in refused_fields(provider, video_id=video_id))


@st.composite
def times(draw: st.DrawFn) -> str:
    year = draw(pick(["2024"], ["2023", "2000", "1900", "0000", "0001", "9999", "24"]))
    month = draw(pick(["01", "02"], ["04", "12", "13", "00", "1"]))
    day = draw(pick(["01", "28", "29"], ["30", "31", "32", "00"]))
    separator = draw(pick(["T"], ["t", " ", "_", ""]))
    clock = draw(pick(["00:00:00", "23:59:59"], ["24:00:00", "12:60:00", "23:59:60", "1:00:00"]))
    fraction = draw(pick([""], [".1", ".123456789", ".1234567890", "."]))
    zone = draw(pick(["Z", "+01:00"], ["z", "-23:59", "+24:00", "+05:99", "", "+0500", "+5:00"]))
    return f"{year}-{month}-{day}{separator}{clock}{fraction}{zone}"


def watched_at_problems(watched_at: str) -> set[str]:
    try:
        validate_entry(
            HistoryBody("youtube", "dQw4w9WgXcQ", "t", "https://youtu.be/x", watched_at),
            now=FAR_FUTURE,
        )
    except InvalidEntry as invalid:
        return {error.message for error in invalid.errors}
    return set()


@given(times() | TEXT)
@example("2024-02-29T00:00:00Z")
@example("2023-02-29T00:00:00Z")
@example("2000-02-29T00:00:00Z")
@example("1900-02-29T00:00:00Z")
@example("0000-01-01T00:00:00Z")
@example("\u0662\u0660\u0662\u0664-01-01T00:00:00Z")
@example("2024-01-01T00:00:00+05:99")
@example("2024-01-01T00:00:00.1234567890Z")
def test_watched_at_syntax(watched_at: str) -> None:
    """The pattern states the syntax exactly; the window in time is the description's."""
    syntax_ok = SYNTAX not in watched_at_problems(watched_at)
    assert accepts({"$ref": "#/components/schemas/WatchedAt"}, watched_at) == syntax_ok


@given(st.text(EDGE_CHARACTERS | CHARACTERS, max_size=205))
@example("a" * 200)
@example("a" * 201)
@example("")
@example("the")
@example("\ufdfa" * 12)  # NFKC: one character becomes 18
def test_suggest_query(q: str) -> None:
    """The ``q`` schema is never looser than the server, and exact but for what it cannot
    state: a query with nothing searchable, or one that grows past 200 characters when
    normalized (both described)."""
    (parameter,) = DOCUMENT["paths"]["/v1/suggest"]["get"]["parameters"]
    try:
        normalize_query(q)
        refusal = None
    except QueryRejected as rejected:
        refusal = str(rejected)
    if accepts(parameter["schema"], q):
        assert refusal is None or "searchable" in refusal or "once normalized" in refusal
    else:
        assert refusal is not None
