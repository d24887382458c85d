"""One bounded upstream HTTP exchange: overall deadline, body size cap, no redirects.

Also the JSON shape of answers: :func:`get_json` wants a non-empty JSON object and reports the
``Cache-Control: max-age`` (unclamped; :mod:`._cache` clamps it). Every failure is a
:class:`~._errors.FetchFailed` whose message names the URL without its query string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from smartpip.auth.oidc._errors import FetchFailed
from smartpip.http.outbound import BoundedFetchError, bounded_request, json_object

__all__ = ["MAX_BODY", "REQUEST_DEADLINE", "get_json", "json_object", "request"]

# Why 256 KiB: Google's discovery document and key set are a few KiB and a token answer is
# under 4 KiB; anything far larger is not what we asked for.
MAX_BODY = 256 * 1024
# Why 10 s: the shared client's timeouts bound each connect and read, but a server dripping
# bytes stays under them forever; this bounds the whole exchange (twice the default timeout).
REQUEST_DEADLINE = 10.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


async def request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    data: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> tuple[int, httpx.Headers, bytes]:
    """One bounded request: overall deadline, body size cap, no redirects.

    Raises:
        FetchFailed: Network error, timeout, or a body over 256 KiB.
    """
    where = url.partition("?")[0]
    try:
        return await bounded_request(
            http, method, url, max_body=MAX_BODY, deadline=REQUEST_DEADLINE, data=data, auth=auth
        )
    except BoundedFetchError as error:
        raise FetchFailed(f"{where}: {error}") from None


async def get_json(http: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], float | None]:
    """A JSON object and its ``Cache-Control: max-age``, if any.

    Raises:
        FetchFailed: The request failed, the status is not 200, or the body is not a
            non-empty JSON object.
    """
    status, headers, body = await request(http, "GET", url)
    if status != 200:
        raise FetchFailed(f"{url} answered HTTP {status}")
    document = json_object(body)
    if not document:
        raise FetchFailed(f"{url} answered something else than a JSON object")
    match = _MAX_AGE.search(", ".join(headers.get_list("cache-control")))
    return document, float(match.group(1)) if match else None
