"""The HTTP application every route shares: a quart-trio app with our error handling.

:func:`create_http_app` builds the Quart app around the blueprints it is given (the features'
routes, wired by :mod:`smartpip.runtime.app`), turns every error into a problem document, and
wraps it in :class:`~smartpip.http.middleware.HygieneMiddleware`. It knows no feature.
Background work never runs on ``app.nursery``: supervised tasks live in the root nursery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from quart import Blueprint, Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from smartpip.http.middleware import (
    MAX_BODY_BYTES,
    SCOPE_REQUEST_ID,
    SCOPE_ROUTE,
    HygieneMiddleware,
)
from smartpip.http.problems import ApiError, problem_body, problem_headers, retry_after_seconds
from smartpip.logs import get_logger
from smartpip.metrics import Metrics
from store.postgres import DatabaseUnavailable
from store.redis import RedisUnavailable

__all__ = ["RETRY_AFTER_SECONDS", "create_http_app", "problem_response"]

# Why 2 s: long enough for the pool to reconnect after a blip, short enough not to stall the
# extension, which falls back to its local state meanwhile.
RETRY_AFTER_SECONDS = 2
# Why 10 s: often enough to follow an outage in the log, rare enough not to flood it.
OUTAGE_LOG_SECONDS = 10.0

log = get_logger(__name__)


def _scope() -> dict[str, Any]:
    """The current request's ASGI scope, which the middleware shares (our own keys included)."""
    return cast(dict[str, Any], request.scope)


def problem_response(
    status: int,
    detail: str | None,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    retryable: bool | None = None,
    extra: Mapping[str, object] | None = None,
) -> Response:
    """A problem+json response for the current request."""
    request_id = str(_scope().get(SCOPE_REQUEST_ID, "-"))
    body = problem_body(
        status,
        detail,
        request_id=request_id,
        code=code,
        errors=errors,
        retry_after=retry_after_seconds(headers),
        retryable=retryable,
        extra=extra,
    )
    return Response(body, status=status, headers=problem_headers(headers))


class _OutageLog:
    """One warning per dependency per :data:`OUTAGE_LOG_SECONDS`, however many requests fail.

    While Postgres is known to be down every request fails at once, so a client that ignores
    ``Retry-After`` could write thousands of identical lines a second; the count of the
    requests refused since the last line goes into the next one instead.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, dependency: str, error: str) -> None:
        now = self._clock()
        last = self._last.get(dependency)
        if last is not None and now - last < OUTAGE_LOG_SECONDS:
            self._suppressed[dependency] = self._suppressed.get(dependency, 0) + 1
            return
        self._last[dependency] = now
        log.warning(
            "dependency unavailable",
            dependency=dependency,
            error=error,
            refused_since_last_line=self._suppressed.pop(dependency, 0),
        )


def create_http_app(
    blueprints: Iterable[Blueprint],
    *,
    metrics: Metrics,
    cors_origins: Iterable[str],
    log_level: str,
    request_timeout: float,
    log_format: str = "json",
    body_timeout: float,
    draining: Callable[[], bool] = lambda: False,
) -> HygieneMiddleware:
    """Build the ASGI application around ``blueprints``.

    Args:
        blueprints: Every route of the service.
        metrics: Where request counts and durations go.
        cors_origins: Exact origins allowed to call the API from a browser.
        log_level: The access log's level.
        log_format: The access log's format (``json`` or ``console``).
        request_timeout: The per-request deadline (``SMARTPIP_REQUEST_TIMEOUT``).
        body_timeout: How long a request body may take to arrive (``SMARTPIP_BODY_TIMEOUT``).
        draining: Whether the process is draining (responses then close their connection).

    Returns:
        The Quart app wrapped in :class:`HygieneMiddleware`; the Quart app itself is
        available as ``.app``.
    """
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # A body that has not fully arrived this long after the head is a 408 (connection closed).
    app.config["BODY_TIMEOUT"] = body_timeout
    # The middleware's request deadline bounds the whole exchange; Quart's own 60 s response
    # timeout would only cut a response short after it.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in blueprints:
        app.register_blueprint(blueprint)

    @app.before_request
    async def record_route() -> None:
        if request.url_rule is not None:
            _scope()[SCOPE_ROUTE] = request.url_rule.rule

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return problem_response(
            error.status,
            error.detail,
            code=error.code,
            headers=error.headers,
            errors=[dict(e) for e in error.errors] if error.errors is not None else None,
            retryable=error.retryable,
            extra=error.extra,
        )

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers: dict[str, str] = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        detail = None if status >= 500 else error.description
        return problem_response(status, detail, headers=headers)

    outage_log = _OutageLog()

    async def dependency_unavailable(error: Exception) -> Response:
        dependency = "postgres" if isinstance(error, DatabaseUnavailable) else "redis"
        outage_log.warn(dependency, str(error))
        return problem_response(
            503,
            f"{'the database' if dependency == 'postgres' else 'a dependency'} is unavailable; "
            "retry shortly",
            code="service_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    app.register_error_handler(DatabaseUnavailable, dependency_unavailable)
    app.register_error_handler(RedisUnavailable, dependency_unavailable)

    return HygieneMiddleware(
        app,
        metrics,
        cors_origins,
        log_level=log_level,
        log_format=log_format,
        request_timeout=request_timeout,
        draining=draining,
    )
