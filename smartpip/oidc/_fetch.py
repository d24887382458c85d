"""One bounded upstream HTTP exchange: overall deadline, body size cap, no redirects.

Also the JSON shape of answers: :func:`get_json` wants a non-empty JSON object and reports the
``Cache-Control: max-age`` (unclamped; :mod:`._cache` clamps it). Every failure is a
:class:`~._errors.FetchFailed` whose message names the URL without its query string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from smartpip.oidc._errors import FetchFailed

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
        with trio.fail_after(REQUEST_DEADLINE):
            async with http.stream(
                method, url, data=data, auth=auth, follow_redirects=False
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BODY:
                    raise FetchFailed(f"{where} answered more than {MAX_BODY} bytes")
                body = bytearray()
                with trio.CancelScope() as reading:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY:
                            # Not `break`: httpx's nested async generators, abandoned,
                            # are left to the GC (a ResourceWarning under trio); a
                            # cancelled read unwinds them from the inside.
                            reading.cancel()
                if len(body) > MAX_BODY:
                    raise FetchFailed(f"{where} answered more than {MAX_BODY} bytes")
                return response.status_code, response.headers, bytes(body)
    except trio.TooSlowError:
        raise FetchFailed(f"{where} did not answer within {REQUEST_DEADLINE:g} s") from None
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
        raise FetchFailed(f"{where} failed: {type(error).__name__}") from None


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


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` parsed as a JSON object, or ``{}`` when it is anything else."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
