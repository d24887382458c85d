"""One bounded outbound HTTP exchange, shared by the upstream clients (Google, YouTube).

Bounds: an overall deadline (the client's own timeouts bound each connect and read, but a
server dripping bytes stays under them forever), a body size cap checked against the declared
length and while reading, and no redirects. Failures raise a small hierarchy whose messages
never hold the URL (a query string may carry an API key); callers map them to their own
errors.

::

    BoundedFetchError
    ├── TooLarge      the body is over the cap (retrying will not help)
    ├── TimedOut      no complete answer within the deadline
    └── Unreachable   connection refused or reset, TLS or protocol error
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import trio

__all__ = [
    "BoundedFetchError",
    "TimedOut",
    "TooLarge",
    "Unreachable",
    "bounded_request",
    "json_object",
]


class BoundedFetchError(Exception):
    """The exchange failed; ``str`` never contains the URL."""


class TooLarge(BoundedFetchError):
    """The answer's body is over the cap."""


class TimedOut(BoundedFetchError):
    """No complete answer within the deadline."""


class Unreachable(BoundedFetchError):
    """A transport error (refused, reset, TLS, protocol)."""


async def bounded_request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_body: int,
    deadline: float,
    params: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    io_timeouts: httpx.Timeout | None = None,
) -> tuple[int, httpx.Headers, bytes]:
    """Send one request and read the whole answer within the bounds.

    ``io_timeouts`` overrides the shared client's connect/read timeouts for this request;
    ``deadline`` bounds the whole exchange. ``data`` is sent form-encoded, ``content`` as given
    (with its ``Content-Type`` in ``headers``).

    Returns:
        The status, the headers and the body (redirects are returned, not followed).

    Raises:
        BoundedFetchError: see the module docstring.
    """
    extra: dict[str, Any] = {} if io_timeouts is None else {"timeout": io_timeouts}
    try:
        with trio.fail_after(deadline):
            async with http.stream(
                method,
                url,
                params=params,
                data=data,
                content=content,
                headers=headers,
                auth=auth,
                follow_redirects=False,
                **extra,
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_body:
                    raise TooLarge(f"answer over {max_body} bytes")
                body = bytearray()
                with trio.CancelScope() as reading:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_body:
                            # Not `break`: httpx's nested async generators, abandoned, are
                            # left to the GC (a ResourceWarning under trio); a cancelled read
                            # unwinds them from the inside.
                            reading.cancel()
                if len(body) > max_body:
                    raise TooLarge(f"answer over {max_body} bytes")
                return response.status_code, response.headers, bytes(body)
    except trio.TooSlowError:
        raise TimedOut(f"no answer within {deadline:g} s") from None
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
        # The type only: httpx messages can hold the URL, and with it a key.
        raise Unreachable(type(error).__name__) from None


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` parsed as a JSON object, or ``{}`` when it is anything else."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
