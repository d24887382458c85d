"""One bounded request to the YouTube API: connect/read timeouts, overall deadline, size cap.

Like :func:`smartpip.auth.oidc._fetch.request`, whose limits are fixed for Google's small sign-in
documents; here they come from :class:`~._settings.YouTubeSettings`, and a failure says whether
a retry could help. No redirect is followed. Messages name the method, never the URL nor a
credential (the server key of a GET, the user's bearer token of a POST).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from smartpip.http.outbound import BoundedFetchError, TooLarge, bounded_request, json_object
from smartpip.youtube._errors import UpstreamFailure, error_from_answer
from smartpip.youtube._settings import YouTubeSettings

__all__ = ["get_json", "post_json"]


async def _send(
    http: httpx.AsyncClient,
    settings: YouTubeSettings,
    verb: str,
    method: str,
    params: Mapping[str, str],
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    try:
        status, _headers, body = await bounded_request(
            http,
            verb,
            f"{settings.api_url}/{method}",
            params=params,
            content=content,
            headers=headers,
            max_body=settings.max_body_bytes,
            deadline=settings.timeout,
            io_timeouts=httpx.Timeout(settings.timeout),
        )
    except TooLarge as error:
        raise UpstreamFailure(f"{method}: {error}", method=method, retryable=False) from None
    except BoundedFetchError as error:  # timed out or unreachable: worth another try
        raise UpstreamFailure(f"{method}: {error}", method=method, retryable=True) from None
    return status, body


def _document(method: str, status: int, body: bytes, secret: str) -> dict[str, Any]:
    """The JSON object of a 200 answer, or the typed error of any other."""
    if 300 <= status < 400:
        raise UpstreamFailure(
            f"{method}: redirected (HTTP {status})", method=method, status=status, retryable=False
        )
    document = json_object(body)
    if status != 200:
        raise error_from_answer(method, status, document, secret)
    if not document:
        raise UpstreamFailure(
            f"{method}: answer is not a JSON object", method=method, status=200, retryable=False
        )
    return document


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
    status, body = await _send(http, settings, "GET", method, {**params, "key": settings.api_key})
    return _document(method, status, body, settings.api_key)


async def post_json(
    http: httpx.AsyncClient,
    settings: YouTubeSettings,
    method: str,
    params: Mapping[str, str],
    payload: Mapping[str, Any],
    access_token: str,
) -> dict[str, Any]:
    """The JSON object ``POST {api_url}/{method}?{params}`` with a user's OAuth access token
    answers with HTTP 200 (no server key is sent: the call acts for the user).

    Args:
        http: The shared outbound client.
        settings: Base URL and limits.
        method: ``"playlists"`` or ``"playlistItems"``; the path and the error label.
        params: Query parameters (``part``).
        payload: The JSON body.
        access_token: The user's Google access token, sent as ``Authorization: Bearer``.

    Raises:
        YouTubeError: As :func:`get_json`; a 401 is a :class:`~._errors.Forbidden` with
            ``status`` 401 (the token was refused).
    """
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json; charset=utf-8",
    }
    content = json.dumps(payload, separators=(",", ":")).encode()
    status, body = await _send(
        http, settings, "POST", method, params, content=content, headers=headers
    )
    return _document(method, status, body, access_token)
