"""ASGI middleware around the Quart app: the hygiene every route gets, present and future.

In order, for each HTTP request:

1. a request ID (the client's ``X-Request-ID`` when sane, else a new one), bound to the logs
   and echoed in the response;
2. limits checked before any route code runs: query string (414), header block (431),
   declared body size (413);
3. CORS: preflights answered here for the configured exact origins only;
4. on the way out, default headers (``Cache-Control: no-store``, ``nosniff``, CORS);
5. one JSON access-log line and the request metrics, labelled by route template.

The route template is recorded into the ASGI scope by the app (``SCOPE_ROUTE``) once Quart
has matched the URL; unmatched requests are labelled ``unmatched``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import trio

from smartpip.logs import access_logger, bind_request_id
from smartpip.metrics import UNMATCHED_ROUTE, Metrics
from smartpip.problems import problem_body, problem_headers, retry_after_seconds

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_QUERY_BYTES",
    "SCOPE_REQUEST_ID",
    "SCOPE_ROUTE",
    "HygieneMiddleware",
]

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


_CLIENT_GONE = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class HygieneMiddleware:
    """Wraps an ASGI app with request IDs, limits, CORS, default headers, logs and metrics."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        cors_origins: Iterable[str],
        *,
        log_level: str = "info",
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log = access_logger(log_level)
        self.cors_origins = frozenset(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = (_header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        scope[SCOPE_REQUEST_ID] = request_id
        bind_request_id(request_id)
        origin = (_header(scope, b"origin") or b"").decode("latin-1")
        allowed_origin = origin if origin in self.cors_origins else None
        status_seen = 500
        client_gone = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status_seen, client_gone
            if message["type"] == "http.response.start":
                status_seen = message["status"]
                message["headers"] = self._response_headers(
                    message.get("headers", []), request_id, allowed_origin
                )
            if client_gone:
                return
            try:
                await send(message)
            except _CLIENT_GONE:
                # The client closed the connection while we answered; nobody is left to read,
                # so this is not an error. (hypercorn's trio TCPServer._close sends EOF without
                # its send lock, so the same disconnect can also surface as BusyResourceError.)
                client_gone = True

        try:
            refusal = self._refusal(scope, origin, allowed_origin)
            if refusal is not None:
                await self._answer(send_wrapper, request_id, *refusal)
            elif scope["path"] == LIVENESS_PATH and scope["method"] in ("GET", "HEAD"):
                scope[SCOPE_ROUTE] = LIVENESS_PATH
                await _send_liveness(send_wrapper, head=scope["method"] == "HEAD")
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get(SCOPE_ROUTE, UNMATCHED_ROUTE)
            self.metrics.observe_request(scope["method"], route, status_seen, elapsed)
            self.log.info(
                "request",
                method=scope["method"],
                route=route,
                status=status_seen,
                duration_ms=round(elapsed * 1000, 2),
                **({"client_gone": True} if client_gone else {}),
            )

    def _refusal(
        self, scope: Scope, origin: str, allowed_origin: str | None
    ) -> tuple[int, str | None, dict[str, str]] | None:
        """A response to give instead of running the app, or None to run it."""
        if len(scope.get("query_string", b"")) + len(scope.get("raw_path", b"")) > MAX_QUERY_BYTES:
            return 414, f"the URL is longer than {MAX_QUERY_BYTES} bytes", {}
        header_bytes = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if header_bytes > MAX_HEADER_BYTES:
            return 431, f"the request headers exceed {MAX_HEADER_BYTES} bytes", {}
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return 413, f"request bodies are limited to {MAX_BODY_BYTES} bytes", {}
        if (
            scope["method"] == "OPTIONS"
            and origin
            and _header(scope, b"access-control-request-method") is not None
        ):
            if allowed_origin is None:
                return 403, "this origin may not call the API", {}
            requested = _header(scope, b"access-control-request-headers") or b""
            return (
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
        send: Send, request_id: str, status: int, detail: str | None, headers: dict[str, str]
    ) -> None:
        body = (
            b""
            if status == 204
            else problem_body(
                status, detail, request_id=request_id, retry_after=retry_after_seconds(headers)
            )
        )
        if status != 204:
            headers = problem_headers(headers)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _response_headers(
        headers: Iterable[tuple[bytes, bytes]], request_id: str, allowed_origin: str | None
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
