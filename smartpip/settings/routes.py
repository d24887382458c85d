"""``GET``, ``PUT`` and ``PATCH /v1/settings``: the signed-in user's extension settings.

Each route parses and validates the request (:mod:`smartpip.settings.model`), calls one
function of :mod:`smartpip.settings.service`, and maps its domain errors to problems:

- :class:`~smartpip.settings.model.InvalidSettings`: 422 ``validation_failed``, one entry
  per bad field;
- :class:`~smartpip.settings.service.PreconditionFailed`: 412 ``precondition_failed``;
- :class:`~store.settings.UserGone`: the 401 of a deleted account
  (:func:`~smartpip.http.guards.account_gone`).

503 when Postgres is unavailable is handled app-wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from quart import Blueprint, Response, request

from smartpip.http.bodies import structure
from smartpip.http.etags import etag_for, json_body, json_with_etag
from smartpip.http.guards import Guards, account_gone
from smartpip.http.jsonbody import read_json
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims
from smartpip.settings import service
from smartpip.settings.model import (
    InvalidSettings,
    PatchBody,
    PutBody,
    canonical_document,
    validate_patch,
    validate_put,
)
from smartpip.settings.service import PreconditionFailed, UserGone
from store.postgres import Database
from store.settings import SettingsRow

__all__ = ["settings_blueprint"]


@contextmanager
def _problems() -> Iterator[None]:
    """Turn the model's and the service's domain errors into the API's problems."""
    try:
        yield
    except InvalidSettings as invalid:
        errors = [{"field": e.field, "message": e.message} for e in invalid.errors]
        raise ApiError(422, f"invalid body: {invalid}", errors=errors) from None
    except PreconditionFailed:
        raise ApiError(
            412, "the settings changed since you read them (If-Match does not match)"
        ) from None
    except UserGone:
        raise account_gone() from None


def _written(settings: SettingsRow) -> Response:
    """The answer of a write: the new document and its ETag (``If-None-Match`` plays no part)."""
    body = json_body(canonical_document(settings))
    return Response(body, content_type="application/json", headers={"ETag": etag_for(body)})


def settings_blueprint(db: Database, guards: Guards, *, reads: Policy, writes: Policy) -> Blueprint:
    """``/v1/settings``: read, replace and merge the signed-in user's settings.

    - ``GET`` answers ``{autoPip, skipSeconds, siteFlags, historyRetentionDays,
      historyPaused}`` (defaults ``false``, ``10``, ``{}``, ``null``, ``false`` for a user who
      never saved any) with an ``ETag``; ``If-None-Match`` gives 304.
    - ``PUT`` replaces the document: ``autoPip``, ``skipSeconds`` and ``siteFlags`` required;
      a history field left out keeps its stored value.
    - ``historyRetentionDays``: ``null`` (keep the last five whatever their age) or 1, 7, 30
      or 90 (days; older videos are deleted by the cleanup job); ``historyPaused``: while
      true, ``POST /v1/history`` records nothing (and answers ``recorded: false``).
    - ``PATCH`` merges any subset of the fields. ``siteFlags`` merges per host: a host mapped
      to an object replaces that host's flags as a whole; a host mapped to ``null`` removes
      it; hosts not mentioned stay. The merged result must still fit the limits (422).
    - Both writes answer 200 with the new document and its ``ETag``, honour ``If-Match``
      (412 ``precondition_failed`` when the stored document has another tag) and are limited
      per user by ``writes`` (reads by ``reads``).

    Hosts are lower-case DNS names (labels of ``[a-z0-9-]``, 1-63 characters, no leading or
    trailing hyphen; at most 253 characters): no scheme, port, path, trailing dot or
    ``*.`` wildcard (a rule for subdomains is stored per subdomain); internationalised
    names in punycode. Flags: names ``[A-Za-z][A-Za-z0-9_]{0,31}``, values booleans, at most
    16 per host; at most 200 hosts and 8 KiB of compact JSON in all.

    Args:
        db: Where the settings are.
        guards: Bearer authentication and rate limits.
        reads: The per-user limit of ``GET``.
        writes: The per-user limit of ``PUT`` and ``PATCH``.

    Returns:
        The blueprint, named ``settings``.
    """
    bp = Blueprint("settings", __name__, url_prefix="/v1")

    @bp.get("/settings")
    @guards.user(limit=reads)
    async def get_settings(user: AccessClaims) -> Response:
        with _problems():
            settings = await service.read_settings(db, user.user_id)
        return json_with_etag(canonical_document(settings))

    @bp.put("/settings")
    @guards.user(limit=writes)
    async def put_settings(user: AccessClaims) -> Response:
        body = structure(await read_json(request), PutBody, status=422)
        if_match = request.headers.get("If-Match")
        with _problems():
            new = validate_put(body)
            settings = await service.replace_settings(db, user.user_id, new, if_match=if_match)
        return _written(settings)

    @bp.patch("/settings")
    @guards.user(limit=writes)
    async def patch_settings(user: AccessClaims) -> Response:
        body = structure(await read_json(request), PatchBody, status=422)
        if_match = request.headers.get("If-Match")
        with _problems():
            change = validate_patch(body)
            settings = await service.patch_settings(db, user.user_id, change, if_match=if_match)
        return _written(settings)

    return bp
