"""One bounded GET to the YouTube API: connect/read timeouts, overall deadline, size cap.

Like :func:`smartpip.auth.oidc._fetch.request`, whose limits are fixed for Google's small sign-in
documents; here they come from :class:`~._settings.YouTubeSettings`, and a failure says whether
a retry could help. No redirect is followed. Messages name the method, never the URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from smartpip.http.outbound import BoundedFetchError, TooLarge, bounded_request, json_object
from smartpip.youtube._errors import UpstreamFailure, error_from_answer
from smartpip.youtube._settings import YouTubeSettings

__all__ = ["get_json"]


async def _get(
    http: httpx.AsyncClient, settings: YouTubeSettings, method: str, params: Mapping[str, str]
) -> tuple[int, bytes]:
    try:
        status, _headers, body = await bounded_request(
            http,
            "GET",
            f"{settings.api_url}/{method}",
            params=params,
            max_body=settings.max_body_bytes,
            deadline=settings.timeout,
            io_timeouts=httpx.Timeout(settings.timeout),
        )
    except TooLarge as error:
        raise UpstreamFailure(f"{method}: {error}", method=method, retryable=False) from None
    except BoundedFetchError as error:  # timed out or unreachable: worth another try
        raise UpstreamFailure(f"{method}: {error}", method=method, retryable=True) from None
    return status, body


async def get_json(
    http: httpx.AsyncClient, settings: YouTubeSettings, method: str, params: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON object ``GET {api_url}/{method}?{params}&key=...`` answers with HTTP 200.

    Args:
        http: The shared outbound client.
        settings: Base URL, key and limits.
        method: ``"search"`` or ``"videos"``; the path and the error label.
        params: Query parameters, without the key.

    Raises:
        YouTubeError: A subclass from :func:`~._errors.error_from_answer` for an error
            status; :class:`UpstreamFailure` for a timeout, a transport error, a redirect, an
            oversized body or a 200 that is not a JSON object.
    """
    status, body = await _get(http, settings, method, {**params, "key": settings.api_key})
    if 300 <= status < 400:
        raise UpstreamFailure(
            f"{method}: redirected (HTTP {status})", method=method, status=status, retryable=False
        )
    document = json_object(body)
    if status != 200:
        raise error_from_answer(method, status, document, settings.api_key)
    if not document:
        raise UpstreamFailure(
            f"{method}: answer is not a JSON object", method=method, status=200, retryable=False
        )
    return document
