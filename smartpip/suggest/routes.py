"""``GET /v1/suggest?q=...``: YouTube videos for the extension to suggest, through the cache.

Signed-in users only, limited per user by ``SMARTPIP_RATE_LIMIT_SUGGEST`` (default 30 a
minute). The query is normalized (:func:`~smartpip.suggest.normalize_query`) and the
normalized text is both the cache key and the ``query`` of the answer. Answers carry
``X-Cache: HIT | MISS | STALE | LOCAL``, ``Cache-Control: private, max-age=<freshness left>``
and ``source`` in the body (``youtube``, ``cache`` or ``local``: the corpus answered because
YouTube could not be asked).

Failures: 400 ``invalid_request`` (no ``q``, ``q`` repeated, over 200 characters, control
characters, nothing searchable left), 502 ``upstream_error`` (YouTube answered unusably and
nothing is cached), 503 ``suggest_unavailable`` with ``Retry-After`` (not configured, quota
spent, breaker open, YouTube too slow, key rejected, and nothing is cached and nothing in the
corpus matches).
"""

from __future__ import annotations

import json
from datetime import datetime

from quart import Blueprint, Response, request

from smartpip.http.guards import Guards
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims
from smartpip.suggest import QueryRejected, normalize_query
from smartpip.suggest.service import Suggester, SuggestUnavailable, UpstreamError

__all__ = ["suggest_blueprint"]

# Retry-After of the "not configured" 503: configuration changes need a redeploy.
_DISABLED_RETRY_AFTER = "3600"


def _unavailable(detail: str, retry_after: str, resets_at: datetime | None = None) -> ApiError:
    # resetsAt: when the daily YouTube quota resets, so the extension can stop asking until then.
    extra = {"resetsAt": resets_at.isoformat().replace("+00:00", "Z")} if resets_at else None
    return ApiError(
        503,
        detail,
        code="suggest_unavailable",
        headers={"Retry-After": retry_after},
        extra=extra,
    )


def suggest_blueprint(
    suggester: Suggester | None,
    guards: Guards,
    *,
    limit: Policy,
    stopwords: frozenset[str] = frozenset(),
) -> Blueprint:
    """``/v1/suggest``; answers 503 ``suggest_unavailable`` when no YouTube key is set.

    Args:
        suggester: The suggest service; None when suggest is not configured.
        guards: Bearer authentication and rate limits.
        limit: The per-user limit.
        stopwords: Extra stopwords dropped from queries (``SMARTPIP_SUGGEST_STOPWORDS``).
    """
    bp = Blueprint("suggest", __name__, url_prefix="/v1/suggest")

    @bp.get("")
    @guards.user(limit=limit)
    async def suggest(user: AccessClaims) -> Response:
        del user  # the answer is the same for everyone; no identity goes to YouTube
        if suggester is None:
            raise _unavailable(
                "suggest is not configured on this deployment", _DISABLED_RETRY_AFTER
            )
        values = request.args.getlist("q")
        if len(values) != 1:
            raise ApiError(400, "give the query exactly once, as the q parameter")
        try:
            query = normalize_query(values[0], extra_stopwords=stopwords)
        except QueryRejected as rejected:
            raise ApiError(400, str(rejected)) from None
        try:
            answer = await suggester.suggest(query)
        except SuggestUnavailable as error:
            raise _unavailable(str(error), str(error.retry_after), error.resets_at) from None
        except UpstreamError as error:
            raise ApiError(502, str(error)) from None
        text = json.dumps(query.text, ensure_ascii=False).encode()
        body = (
            b'{"query":'
            + text
            + b',"source":"'
            + answer.source.encode()
            + b'","items":'
            + answer.items_json
            + b"}"
        )
        return Response(
            body,
            content_type="application/json",
            headers={
                "X-Cache": answer.cache,
                "Cache-Control": f"private, max-age={answer.max_age}",
            },
        )

    return bp
