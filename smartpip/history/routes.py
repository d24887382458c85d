"""Watch history endpoints: ``/v1/history`` (the last five videos of the signed-in user).

Every route takes the user from the bearer token only; no user ID is ever read from the path,
query or body. Reads are limited by ``SMARTPIP_RATE_LIMIT_USER``, writes (POST, DELETE) by
``SMARTPIP_RATE_LIMIT_WRITES`` (default 60 a minute per user). ``POST`` answers the history
after the write and ``recorded``: false while the user paused their history (settings
``historyPaused``; nothing was written, still 200: the request was fine, the user chose).
Failures: 422
``validation_failed`` with one entry per bad field, 401 when the account no longer exists,
503 when Postgres is unavailable (handled app-wide).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from quart import Blueprint, Response, request

from smartpip.history.model import (
    KNOWN_PROVIDERS,
    HistoryBody,
    InvalidEntry,
    ProviderRule,
    could_be_stored,
    item_document,
    validate_entry,
)
from smartpip.http.bodies import structure
from smartpip.http.etags import json_with_etag
from smartpip.http.guards import Guards, account_gone
from smartpip.http.jsonbody import read_json
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims
from store.history import (
    HistoryOwnerMissing,
    delete_history,
    delete_history_entry,
    record_watch,
    select_history,
)
from store.postgres import Database

__all__ = ["history_blueprint"]


def history_blueprint(
    db: Database,
    guards: Guards,
    *,
    reads: Policy,
    writes: Policy,
    providers: Mapping[str, ProviderRule] = KNOWN_PROVIDERS,
) -> Blueprint:
    """``/v1/history``.

    Args:
        db: Where the history is.
        guards: Bearer authentication and rate limits.
        reads: The per-user limit of the reads.
        writes: The per-user limit of the writes.
        providers: The allowed providers (``smartpip.history.model.select_providers`` of the
            configured names); all known ones by default.

    Returns:
        The blueprint, named ``history``.
    """
    bp = Blueprint("history", __name__, url_prefix="/v1/history")

    @bp.get("")
    @guards.user(limit=reads)
    async def list_history(user: AccessClaims) -> Response:
        rows = await db.read(select_history, user.user_id)
        return json_with_etag({"items": [item_document(row) for row in rows]})

    @bp.post("")
    @guards.user(limit=writes)
    async def add_to_history(user: AccessClaims) -> dict[str, object]:
        body = structure(await read_json(request), HistoryBody, status=422)
        now = datetime.now(UTC)
        try:
            entry = validate_entry(body, now=now, providers=providers)
        except InvalidEntry as invalid:
            errors = [{"field": e.field, "message": e.message} for e in invalid.errors]
            raise ApiError(422, f"invalid body: {invalid}", errors=errors) from None
        try:
            written = await db.run(record_watch, user.user_id, entry, now=now)
        except HistoryOwnerMissing:
            raise account_gone() from None
        return {
            "items": [item_document(row) for row in written.items],
            "recorded": written.recorded,
        }

    @bp.get("/last")
    @guards.user(limit=reads)
    async def last(user: AccessClaims) -> dict[str, object]:
        rows = await db.read(select_history, user.user_id, 1)
        return {"item": item_document(rows[0]) if rows else None}

    @bp.delete("")
    @guards.user(limit=writes)
    async def clear(user: AccessClaims) -> tuple[str, int]:
        await db.run(delete_history, user.user_id)
        return "", 204

    # The path variable is named as in the API's contract: /v1/history/{provider}/{videoId}.
    @bp.delete("/<provider>/<videoId>")
    @guards.user(limit=writes)
    async def forget(user: AccessClaims, provider: str, videoId: str) -> tuple[str, int]:
        # A segment no stored row can have (a NUL character reached Postgres as a 500 before)
        # is absent: 204 without a query.
        if could_be_stored(provider, videoId):
            await db.run(delete_history_entry, user.user_id, provider, videoId)
        return "", 204

    return bp
