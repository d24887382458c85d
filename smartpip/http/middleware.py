"""ASGI middleware around the Quart app: the hygiene every route gets, present and future.

In order, for each HTTP request:

1. a request ID (the client's ``X-Request-ID`` when sane, else a new one), bound to the logs
   and echoed in the response;
2. framing and limits checked before any route code runs: ``Content-Length`` together with
   ``Transfer-Encoding`` (400, connection closed), URL length (414), percent-encoding that is
   not UTF-8 (400), header block (431), declared body size (413);
3. CORS: preflights answered here for the configured exact origins only;
4. the app runs under the per-request deadline (``SMARTPIP_REQUEST_TIMEOUT``): past it, the
   request is cancelled and answered 503 ``deadline_exceeded`` (connection closed), or, if
   its answer had started, cut short;
5. on the way out, default headers (``Cache-Control: no-store``, ``nosniff``, CORS), and the
   keep-alive rules of :class:`~smartpip.http.exchange.Exchange`;
6. one JSON access-log line and the request metrics, labelled by route template (status 499
   when the client left before any answer).

The route template is recorded into the ASGI scope by the app (``SCOPE_ROUTE``) once Quart
has matched the URL; unmatched requests are labelled ``unmatched``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs
import trio

from smartpip.http.exchange import Exchange
from smartpip.http.problems import problem_body, problem_headers, retry_after_seconds
from smartpip.logs import access_logger, bind_request_id, get_logger
from smartpip.metrics import UNMATCHED_ROUTE, Metrics

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_QUERY_BYTES",
    "SCOPE_REQUEST_ID",
    "SCOPE_ROUTE",
    "HygieneMiddleware",
]

log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any: Quart types its __call__ with its own TypedDicts, which a plain mapping type rejects.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

SCOPE_ROUTE = "smartpip.route"
SCOPE_REQUEST_ID = "smartpip.request_id"
# Why 16 KiB: the largest legitimate body (settings with 200 site flags) is under 10 KiB.
MAX_BODY_BYTES = 16 * 1024
# Why 8 KiB: matches common proxies' URL limits; our longest query (suggest) is ~200 bytes.
MAX_QUERY_BYTES = 8 * 1024
# Why 16 KiB: a browser's headers with cookies stay far below; nginx's default is 8-32 KiB.
MAX_HEADER_BYTES = 16 * 1024
# Why 10 minutes: browsers cap preflight caching at 2 h (Chromium) or 24 h (Firefox).
CORS_MAX_AGE = "600"
CORS_EXPOSE = "X-Request-ID, Retry-After, RateLimit, RateLimit-Policy, ETag, X-Cache"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# nginx's status for "the client closed the connection before the answer" (not an HTTP status
# on the wire; only logs and metrics see it, so client disconnects never count as 5xx).
CLIENT_CLOSED_REQUEST = 499
# Why 2 s: a request that hit the deadline met a slow dependency; by then the health monitor
# (2 s interval) has noticed, and the retry either succeeds or fails fast.
DEADLINE_RETRY_AFTER = "2"

# Liveness is answered here, before the framework: it must say only "the process answers",
# it is the most frequently hit path (orchestrator and proxy probes), and quart-trio's own
# per-request cost is a quarter of the bare server's throughput (see bench/README.md). The
# Quart route of the same path stays the documented one and answers the other methods (405).
LIVENESS_PATH = "/healthz"
_LIVENESS_BODY = b'{"status":"ok"}'
_LIVENESS_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_LIVENESS_BODY)).encode()),
]


async def _send_liveness(send: Send, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": list(_LIVENESS_HEADERS)})
    await send({"type": "http.response.body", "body": b"" if head else _LIVENESS_BODY})


# The request headers the middleware reads; collected in one pass over the header list
# (`_scan_headers`), with the header block's size, instead of one pass per header.
_READ_HEADERS = frozenset(
    {
        b"x-request-id",
        b"origin",
        b"transfer-encoding",
        b"content-length",
        b"access-control-request-method",
        b"access-control-request-headers",
    }
)


def _scan_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], int]:
    """The first value of each header in :data:`_READ_HEADERS`, and the header block's size
    (name, value and 4 bytes of framing per field)."""
    found: dict[bytes, bytes] = {}
    size = 0
    for key, value in headers:
        size += len(key) + len(value) + 4
        if key in _READ_HEADERS and key not in found:
            found[key] = bytes(value)
    return found, size


def _utf8_after_unquoting(raw: bytes) -> bool:
    """Whether percent-decoding ``raw`` gives valid UTF-8 (no lone surrogates, no stray bytes)."""
    if b"%" not in raw and raw.isascii():
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@attrs.frozen
class _Refusal:
    status: int
    detail: str | None
    headers: dict[str, str] = attrs.field(factory=dict)
    close: bool = False


class HygieneMiddleware:
    """Wraps an ASGI app with request IDs, limits, CORS, default headers, logs and metrics.

    Args:
        app: The Quart app.
        metrics: Where request counts and durations go.
        cors_origins: Exact origins allowed to call the API from a browser.
        log_level: The access log's level.
        log_format: The access log's format (``json`` or ``console``).
        request_timeout: Seconds a request may take, from its head to its last byte out;
            past it the request is cancelled and answered 503 ``deadline_exceeded``.
        draining: Whether the process is draining; then every response ends its connection.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        cors_origins: Iterable[str],
        *,
        log_level: str = "info",
        log_format: str = "json",
        request_timeout: float = 30.0,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.draining = draining
        self.metrics = metrics
        self.log = access_logger(log_level, log_format)
        self.cors_origins = frozenset(cors_origins)
        self.request_timeout = request_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        found, header_bytes = _scan_headers(scope["headers"])
        offered = found.get(b"x-request-id", b"").decode("latin-1")
        # 128 random bits as 32 hex digits, like uuid4().hex at a quarter of its cost.
        request_id = offered if _REQUEST_ID.fullmatch(offered) else os.urandom(16).hex()
        scope[SCOPE_REQUEST_ID] = request_id
        bind_request_id(request_id)
        origin = found.get(b"origin", b"").decode("latin-1")
        allowed_origin = origin if origin in self.cors_origins else None
        exchange = Exchange(
            scope,
            receive,
            send,
            partial(self._response_headers, request_id=request_id, allowed_origin=allowed_origin),
            self.draining,
        )
        timed_out = False
        try:
            refusal = self._refusal(scope, found, header_bytes, origin, allowed_origin)
            if refusal is not None:
                if refusal.close:
                    exchange.close_connection()
                await self._answer(
                    exchange.send, request_id, refusal.status, refusal.detail, refusal.headers
                )
            elif scope["path"] == LIVENESS_PATH and scope["method"] in ("GET", "HEAD"):
                scope[SCOPE_ROUTE] = LIVENESS_PATH
                await _send_liveness(exchange.send, head=scope["method"] == "HEAD")
            else:
                timed_out = await self._run_app(scope, exchange, request_id)
        finally:
            with trio.CancelScope(shield=True):
                await exchange.finish()
            elapsed = time.perf_counter() - started
            route = scope.get(SCOPE_ROUTE, UNMATCHED_ROUTE)
            status = exchange.status
            if status is None:
                # No answer at all: the client left first (499, as nginx logs it), or a bug.
                status = CLIENT_CLOSED_REQUEST if exchange.client_gone else 500
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            self.log.info(
                "request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                **({"client_gone": True} if exchange.client_gone else {}),
                **({"deadline_exceeded": True} if timed_out else {}),
            )

    async def _run_app(self, scope: Scope, exchange: Exchange, request_id: str) -> bool:
        """Run the app under the request deadline; True when the deadline ended it."""
        with trio.move_on_after(self.request_timeout) as deadline:
            await self.app(scope, exchange.receive, exchange.send)
        if not deadline.cancelled_caught or exchange.complete:
            return False
        log.warning(
            "request deadline exceeded",
            method=scope["method"],
            route=scope.get(SCOPE_ROUTE, UNMATCHED_ROUTE),
            timeout=self.request_timeout,
            answered=exchange.started,
        )
        if not exchange.started:
            exchange.close_connection()
            await self._answer(
                exchange.send,
                request_id,
                503,
                f"the request did not complete within {self.request_timeout:g} s",
                {"Retry-After": DEADLINE_RETRY_AFTER},
                code="deadline_exceeded",
            )
        # Else the response was cut short: hypercorn closes the connection, since the
        # exchange on it never completed.
        return True

    def _refusal(
        self,
        scope: Scope,
        found: dict[bytes, bytes],
        header_bytes: int,
        origin: str,
        allowed_origin: str | None,
    ) -> _Refusal | None:
        """A response to give instead of running the app, or None to run it.

        ``found`` and ``header_bytes`` are :func:`_scan_headers` of the request's headers.
        """
        length = found.get(b"content-length")
        if b"transfer-encoding" in found and length is not None:
            # RFC 9112 6.3: a request smuggling attempt; answer and close the connection, so
            # whatever follows the chunked body is never read as a request.
            return _Refusal(
                400, "Content-Length and Transfer-Encoding may not be combined", close=True
            )
        raw_path, query = scope.get("raw_path", b""), scope.get("query_string", b"")
        if len(query) + len(raw_path) > MAX_QUERY_BYTES:
            return _Refusal(414, f"the URL is longer than {MAX_QUERY_BYTES} bytes")
        if not (_utf8_after_unquoting(raw_path) and _utf8_after_unquoting(query)):
            return _Refusal(400, "the URL's percent-encoding is not valid UTF-8")
        if header_bytes > MAX_HEADER_BYTES:
            return _Refusal(431, f"the request headers exceed {MAX_HEADER_BYTES} bytes")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _Refusal(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        if scope["method"] == "OPTIONS" and origin and b"access-control-request-method" in found:
            if allowed_origin is None:
                return _Refusal(403, "this origin may not call the API")
            requested = found.get(b"access-control-request-headers", b"")
            return _Refusal(
                204,
                None,
                {
                    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
                    "Access-Control-Allow-Headers": requested.decode("latin-1")
                    or "Authorization, Content-Type",
                    "Access-Control-Max-Age": CORS_MAX_AGE,
                },
            )
        return None

    @staticmethod
    async def _answer(
        send: Send,
        request_id: str,
        status: int,
        detail: str | None,
        headers: dict[str, str],
        *,
        code: str | None = None,
    ) -> None:
        if status == 204:
            body = b""
        else:
            body = problem_body(
                status,
                detail,
                request_id=request_id,
                code=code,
                retry_after=retry_after_seconds(headers),
            )
            headers = problem_headers(headers)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _response_headers(
        _status: int,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        request_id: str,
        allowed_origin: str | None,
    ) -> list[tuple[bytes, bytes]]:
        out = [(bytes(k).lower(), bytes(v)) for k, v in headers]
        present = {k for k, _ in out}
        out.append((b"x-request-id", request_id.encode()))
        if b"cache-control" not in present:
            out.append((b"cache-control", b"no-store"))
        out.append((b"x-content-type-options", b"nosniff"))
        if allowed_origin is not None:
            out.append((b"access-control-allow-origin", allowed_origin.encode("latin-1")))
            out.append((b"access-control-expose-headers", CORS_EXPOSE.encode()))
        out.append((b"vary", b"Origin"))
        return out
