"""The YouTube Data API client: ``search.list`` then one ``videos.list`` for the statistics.

Cost per :meth:`YouTubeClient.search` that finds something: one search (100 units, or one of the
~100 daily searches) plus one ``videos.list`` (1 unit), times the attempts. Retries only follow
retryable :class:`UpstreamFailure` (5xx, timeout, connection error); a 4xx, a quota error, a
redirect, an oversized or malformed answer is raised at once, since a retry cannot change it
and still costs quota. Worst-case duration: ``(retries + 1) * timeout`` per call plus the
backoff delays (under ``retry_base * (2**retries - 1)``), for each of the two calls.

Nothing here logs the key or a URL, and no user identity (no ``quotaUser``) is sent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import httpx
import trio

from smartpip.youtube._errors import UpstreamFailure, YouTubeError
from smartpip.youtube._fetch import get_json
from smartpip.youtube._models import ShapeError, Video, parse_search, parse_statistics
from smartpip.youtube._settings import YouTubeSettings

__all__ = ["SEARCH_FIELDS", "VIDEOS_FIELDS", "CallHook", "YouTubeClient"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

CallHook = Callable[[str, str], None]
"""``on_call(method, outcome)``, once per HTTP attempt: method ``"search"`` or ``"videos"``;
outcome ``"ok"``, ``"quota"``, ``"key_invalid"``, ``"forbidden"``, ``"bad_request"`` or
``"error"`` (5xx, timeout, rate limit, unusable answer)."""

# Partial responses: only the fields Video needs (smaller answers, faster parse).
SEARCH_FIELDS = "items(id/videoId,snippet(publishedAt,title,description,channelTitle,thumbnails))"
# The snippet for the full description: search.list truncates it, and ranking reads it.
VIDEOS_FIELDS = "items(id,snippet/description,statistics/viewCount)"


class YouTubeClient:
    """Searches YouTube with the server key; one instance per service, built by the root.

    Args:
        settings: URL, key and limits.
        http: The shared outbound client (its redirects are not followed for these calls).
        sleep: Awaited for each backoff delay (tests record the delays instead of waiting).
        rng: Jitter source.
        on_call: Metrics hook, see :data:`CallHook`.
    """

    def __init__(
        self,
        settings: YouTubeSettings,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[object]] = trio.sleep,
        rng: random.Random | None = None,
        on_call: CallHook | None = None,
    ) -> None:
        self.settings = settings
        self._http = http
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_call = on_call

    async def search(self, query: str, *, on_call: CallHook | None = None) -> list[Video]:
        """Videos matching ``query``, in YouTube's order, with view counts joined.

        Args:
            query: Sent as ``q`` as given (normalization is the caller's job).
            on_call: Also told of each attempt of this search (a caller metering the quota
                units of one search), besides the client's own hook.

        Returns:
            Up to ``max_results`` videos; an empty list makes no ``videos.list`` call.

        Raises:
            QuotaExceeded, KeyInvalid, Forbidden, BadRequest: From either call, never retried.
            UpstreamFailure: Retries exhausted, or an unusable answer.
        """
        params = {
            "part": "snippet",
            "type": "video",
            "safeSearch": "strict",
            "maxResults": str(self.settings.max_results),
            "q": query,
            "fields": SEARCH_FIELDS,
        }
        videos = await self._call("search", params, parse_search, on_call)
        if not videos:
            return []
        params = {
            "part": "statistics,snippet",
            "id": ",".join(dict.fromkeys(video.video_id for video in videos)),
            "fields": VIDEOS_FIELDS,
        }
        statistics = await self._call("videos", params, parse_statistics, on_call)
        joined = []
        for video in videos:
            view_count, description = statistics.get(video.video_id, (None, None))
            joined.append(
                attrs.evolve(
                    video, view_count=view_count, description=description or video.description
                )
            )
        return joined

    async def _call(
        self,
        method: str,
        params: dict[str, str],
        parse: Callable[[dict[str, Any]], _T],
        on_call: CallHook | None,
    ) -> _T:
        """One API method with bounded retries; reports each attempt to ``on_call``."""
        attempt = 0
        while True:
            try:
                document = await get_json(self._http, self.settings, method, params)
                try:
                    result = parse(document)
                except ShapeError as error:
                    raise UpstreamFailure(
                        f"{method}: unexpected answer: {error}", method=method, retryable=False
                    ) from None
            except YouTubeError as error:
                self._report(method, error.outcome, on_call)
                if not (isinstance(error, UpstreamFailure) and error.retryable):
                    raise
                if attempt >= self.settings.retries:
                    raise
                delay = self._backoff(attempt)
                attempt += 1
                logger.warning(
                    "youtube call failed, retrying",
                    extra={"method": method, "error": str(error), "retry_in": round(delay, 3)},
                )
                await self._sleep(delay)
                continue
            self._report(method, "ok", on_call)
            return result

    def _backoff(self, attempt: int) -> float:
        """Equal jitter: uniform in ``[d/2, d]`` with ``d = retry_base * 2**attempt``."""
        ceiling = self.settings.retry_base * float(2**attempt)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _report(self, method: str, outcome: str, on_call: CallHook | None) -> None:
        for hook in (self._on_call, on_call):
            if hook is not None:
                hook(method, outcome)
