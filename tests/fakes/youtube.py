"""A local YouTube Data API v3 for tests: a real HTTP server on loopback, real wire format.

The production client (:mod:`smartpip.youtube`) talks to it over real HTTP. Routes:

- ``GET /youtube/v3/search``: ``youtube#searchListResponse`` of the corpus videos whose title
  and description (unescaped, case-folded) contain every whitespace-separated term of ``q``,
  in corpus order, at most ``maxResults`` (default 5, as Google);
- ``GET /youtube/v3/videos``: ``youtube#videoListResponse`` for the listed ``id`` values,
  statistics counts as strings, ``viewCount`` absent for hidden counts, unknown or unlisted IDs
  absent from ``items``.

``fields`` is recorded but not applied. A wrong ``key`` answers 400 in the newer envelope
(``errors[].reason`` ``badRequest``, ``status`` ``INVALID_ARGUMENT``, ``details[].reason``
``API_KEY_INVALID``), or with ``legacy_key_error`` the older ``keyInvalid`` one.

Faults, per method in ``faults["search"]`` / ``faults["videos"]`` (:meth:`inject` sets one or
both), effective from the next request, in this order: ``latency`` (seconds before answering),
``hold`` (an event: no answer until the test sets it, so that no timing can race it),
``redirect`` (302 elsewhere), ``fail_next`` (that many 5xx ``backendError`` answers, see
:meth:`fail_next`), ``quota_exceeded`` (403 ``youtube.quota`` ``quotaExceeded``),
``forbidden`` (403 with that reason), the key check, ``malformed`` (200, not JSON),
``oversized`` (200, valid JSON of ``oversized_bytes``). Every request is counted in ``calls``
first, whatever it is answered, as Google charges quota for failed requests too.

Usage (pytest-trio)::

    fake = FakeYouTube()
    api_url = await nursery.start(fake.run)  # "http://127.0.0.1:PORT/youtube/v3"
"""

from __future__ import annotations

import collections
import html
import json
import logging
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from tests.fakes.asgi import serve_lifespan
from tests.fakes.youtube_corpus import CORPUS, CorpusVideo
from tests.fakes.youtube_playlists import FakePlaylists

__all__ = ["FakeYouTube", "Faults"]

_PREFIX = "/youtube/v3/"
_Response = tuple[int, dict[str, str], bytes]
# Why 2 MB: over the client's default 1 MB cap (tests with a smaller cap stay over it too).
_OVERSIZED = 2_000_000


@attrs.define
class Faults:
    """Faults of one API method (see the module docstring)."""

    latency: float = 0.0
    hold: trio.Event | None = None
    redirect: bool = False
    fail_count: int = 0
    fail_status: int = 503
    quota_exceeded: bool = False
    forbidden: str | None = None
    malformed: bool = False
    oversized: bool = False


def _json(status: int, body: object) -> _Response:
    return status, {"content-type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


def _error(code: int, message: str, reason: str, domain: str = "global", **more: Any) -> _Response:
    errors = [{"message": message, "domain": domain, "reason": reason}]
    return _json(code, {"error": {"code": code, "message": message, "errors": errors, **more}})


class FakeYouTube:
    """A YouTube Data API on ``127.0.0.1:<ephemeral>``.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/youtube/v3`` once :meth:`run` has started.
        calls: Requests received per method (``"search"``, ``"videos"``).
        last_params: The query parameters of each method's last request.
        faults: Fault injection per method.
        legacy_key_error: Answer a wrong key with the older ``keyInvalid`` envelope.
        oversized_bytes: Size of the ``oversized`` answer.
    """

    def __init__(self, api_key: str = "test-key", corpus: tuple[CorpusVideo, ...] = CORPUS) -> None:
        self.api_key = api_key
        self.corpus = corpus
        self.base_url = ""
        self.calls: collections.Counter[str] = collections.Counter()
        self.last_params: dict[str, dict[str, str]] = {}
        self.faults = {"search": Faults(), "videos": Faults()}
        self.legacy_key_error = False
        self.oversized_bytes = _OVERSIZED
        #: Serves ``playlists``/``playlistItems`` on the same base URL when set (a deployment
        #: has one SMARTPIP_YOUTUBE_API_URL for suggest and playlist writes).
        self.playlists: FakePlaylists | None = None

    def inject(self, method: str | None = None, **changes: Any) -> None:
        """Set fault fields on ``method`` (``"search"``/``"videos"``), or both when None."""
        for name in [method] if method else list(self.faults):
            self.faults[name] = attrs.evolve(self.faults[name], **changes)

    def fail_next(self, n: int, status: int = 503, method: str | None = None) -> None:
        """Answer the next ``n`` requests of ``method`` (each method when None) with 5xx."""
        self.inject(method, fail_count=n, fail_status=status)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``nursery.start(fake.run)`` returns :attr:`base_url`."""
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tests.fakes.youtube")
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(partial(serve, self._app, config, mode="asgi"))
            self.base_url = binds[0] + _PREFIX.rstrip("/")
            task_status.started(self.base_url)

    async def _app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.playlists is not None and scope["method"] == "POST":
            await self.playlists.serve_http(scope, receive, send)
            return
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        status, headers, payload = await self._handle(scope["method"], scope["path"], params)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _handle(self, verb: str, path: str, params: dict[str, str]) -> _Response:
        method = path.removeprefix(_PREFIX)
        if verb != "GET" or not path.startswith(_PREFIX) or method not in self.faults:
            return _error(404, "Not Found", "notFound")
        self.calls[method] += 1
        self.last_params[method] = params
        faults = self.faults[method]
        if faults.latency:
            # The injected fault (a slow YouTube), not a wait for a side effect.
            await trio.sleep(faults.latency)
        if faults.hold is not None:
            await faults.hold.wait()
        if faults.redirect:
            return 302, {"location": "http://127.0.0.1:9/elsewhere"}, b""
        if faults.fail_count > 0:
            faults.fail_count -= 1
            return _error(faults.fail_status, "Backend Error", "backendError")
        if faults.quota_exceeded:
            message = "The request cannot be completed because you have exceeded your quota."
            return _error(403, message, "quotaExceeded", domain="youtube.quota")
        if faults.forbidden:
            return _error(403, "Forbidden", faults.forbidden)
        if params.get("key") != self.api_key:
            return self._key_invalid()
        if faults.malformed:
            return 200, {"content-type": "application/json"}, b'{"items": [ not json'
        if faults.oversized:
            return _json(200, {"items": [], "padding": "x" * self.oversized_bytes})
        return _json(200, self._search(params) if method == "search" else self._videos(params))

    def _key_invalid(self) -> _Response:
        message = "API key not valid. Please pass a valid API key."
        if self.legacy_key_error:
            return _error(400, message, "keyInvalid", domain="usageLimits")
        detail = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "youtube.googleapis.com"},
        }
        return _error(400, message, "badRequest", status="INVALID_ARGUMENT", details=[detail])

    def _search(self, params: dict[str, str]) -> dict[str, Any]:
        terms = params.get("q", "").casefold().split()
        matches = [
            video
            for video in self.corpus
            if all(
                term in html.unescape(f"{video.title} {video.description}").casefold()
                for term in terms
            )
        ]
        limit = int(params.get("maxResults", "5"))
        answer: dict[str, Any] = {
            "kind": "youtube#searchListResponse",
            "etag": "fake-etag",
            "regionCode": "US",
            "pageInfo": {"totalResults": len(matches), "resultsPerPage": limit},
            "items": [self._search_item(video) for video in matches[:limit]],
        }
        if len(matches) > limit:
            answer["nextPageToken"] = "CAUQAA"
        return answer

    @staticmethod
    def _snippet(video: CorpusVideo) -> dict[str, Any]:
        base = f"https://i.ytimg.com/vi/{video.video_id}"
        return {
            "publishedAt": video.published_at,
            "channelId": "UC" + video.channel_title.encode().hex()[:22],
            "title": video.title,
            "description": video.description,
            "thumbnails": {
                "default": {"url": f"{base}/default.jpg", "width": 120, "height": 90},
                "medium": {"url": f"{base}/mqdefault.jpg", "width": 320, "height": 180},
                "high": {"url": f"{base}/hqdefault.jpg", "width": 480, "height": 360},
            },
            "channelTitle": video.channel_title,
            "liveBroadcastContent": "none",
            "publishTime": video.published_at,
        }

    def _search_item(self, video: CorpusVideo) -> dict[str, Any]:
        return {
            "kind": "youtube#searchResult",
            "etag": f"etag-{video.video_id}",
            "id": {"kind": "youtube#video", "videoId": video.video_id},
            "snippet": self._snippet(video),
        }

    def _videos(self, params: dict[str, str]) -> dict[str, Any]:
        by_id = {video.video_id: video for video in self.corpus if video.listed}
        items = []
        for video_id in params.get("id", "").split(","):
            video = by_id.get(video_id)
            if video is None:
                continue
            statistics = {"likeCount": "10", "favoriteCount": "0", "commentCount": "3"}
            if video.view_count is not None:
                statistics["viewCount"] = str(video.view_count)
            items.append(
                {
                    "kind": "youtube#video",
                    "etag": f"etag-{video_id}",
                    "id": video_id,
                    "snippet": self._snippet(video),
                    "statistics": statistics,
                }
            )
        return {
            "kind": "youtube#videoListResponse",
            "etag": "fake-etag",
            "items": items,
            "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
        }
