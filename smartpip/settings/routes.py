"""The user's extension settings: ``GET``, ``PUT`` and ``PATCH /v1/settings``.

The document is ``{autoPip, skipSeconds, siteFlags}``. Its canonical JSON (compact, hosts and
flag names sorted) is both the response body and the input of its ``ETag``, so a GET and the
answer of a write carry equal tags for equal documents on every replica.

Writes honour ``If-Match`` against the document stored *now*: the check runs inside the
writing transaction, after the settings row is locked (:func:`store.settings.lock_settings`),
so of two devices writing with the same tag exactly one wins and the other gets 412.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import psycopg
from quart import Blueprint, Response, request

from smartpip.http.bodies import structure
from smartpip.http.etags import etag_for, json_with_etag
from smartpip.http.guards import Guards, account_gone
from smartpip.http.jsonbody import read_json
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Policy
from smartpip.http.tokens import AccessClaims
from store.postgres import Database
from store.settings import (
    SettingsRow,
    SiteFlags,
    UserGone,
    lock_settings,
    select_settings,
    upsert_settings,
)

__all__ = [
    "MAX_FLAGS_PER_HOST",
    "MAX_HOSTS",
    "MAX_SITE_FLAGS_BYTES",
    "canonical_body",
    "canonical_document",
    "settings_blueprint",
    "write_settings",
]

# Why 1..300: a skip longer than five minutes is a seek, not a skip; the table's CHECK agrees.
MIN_SKIP_SECONDS = 1
MAX_SKIP_SECONDS = 300
# Why 200 hosts and 8 KiB: the extension syncs the whole document to every device on each
# change (chrome.storage.sync allows 8 KiB per item); 200 hosts is far more than anyone
# configures by hand, and both keep a row (and every GET) small.
MAX_HOSTS = 200
MAX_SITE_FLAGS_BYTES = 8 * 1024
# Why 16: the extension knows a handful of per-site switches; 16 leaves room to grow.
MAX_FLAGS_PER_HOST = 16
# DNS limits (RFC 1035): 63 characters a label, 253 a name.
MAX_HOST_CHARS = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_FLAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")

# A field missing from a PATCH body (``null`` is a value, and an invalid one).
_ABSENT: Any = object()


def canonical_document(settings: SettingsRow) -> dict[str, object]:
    """The API document of ``settings``, with hosts and flag names in sorted order."""
    return {
        "autoPip": settings.auto_pip,
        "skipSeconds": settings.skip_seconds,
        "siteFlags": _sorted_flags(settings.site_flags),
    }


def canonical_body(settings: SettingsRow) -> bytes:
    """The exact bytes ``GET /v1/settings`` answers for ``settings`` (and hashes for its ETag)."""
    # Same serialisation as smartpip.http.etags.json_with_etag, so the tags agree.
    return json.dumps(
        canonical_document(settings), separators=(",", ":"), ensure_ascii=False
    ).encode()


def _sorted_flags(flags: SiteFlags) -> dict[str, dict[str, bool]]:
    return {host: dict(sorted(flags[host].items())) for host in sorted(flags)}


def _host_problem(host: str) -> str | None:
    """Why ``host`` is not an acceptable site key, or None if it is."""
    if len(host) > MAX_HOST_CHARS:
        return f"host {host[:40]!r}... is longer than {MAX_HOST_CHARS} characters"
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return (
            f"host {host!r} is not a lower-case DNS name (no scheme, port, path, wildcard "
            "or trailing dot; internationalised names in punycode)"
        )
    return None


def _flags_problem(host: str, flags: object) -> str | None:
    """Why ``flags`` is not an acceptable flags object for ``host``, or None if it is."""
    if not isinstance(flags, dict):
        return f"the flags of {host!r} must be an object of booleans"
    if len(flags) > MAX_FLAGS_PER_HOST:
        return f"{host!r} has more than {MAX_FLAGS_PER_HOST} flags"
    for name, value in flags.items():
        if not _FLAG_NAME.fullmatch(name):
            return f"flag name {name!r} of {host!r} must match {_FLAG_NAME.pattern}"
        if not isinstance(value, bool):
            return f"flag {name!r} of {host!r} must be true or false"
    return None


def _site_flags_problem(value: object, *, nullable_hosts: bool) -> str | None:
    """Why ``value`` is not a valid ``siteFlags`` object (per host; limits apply separately)."""
    if not isinstance(value, dict):
        return "must be an object mapping host names to objects of boolean flags"
    for host, flags in value.items():
        problem = _host_problem(host)
        if problem is None and not (nullable_hosts and flags is None):
            problem = _flags_problem(host, flags)
        if problem is not None:
            return problem
    return None


def _limits_problem(flags: SiteFlags) -> str | None:
    """Why the whole ``siteFlags`` object is too big, or None."""
    if len(flags) > MAX_HOSTS:
        return f"at most {MAX_HOSTS} hosts"
    size = len(json.dumps(_sorted_flags(flags), separators=(",", ":")).encode())
    if size > MAX_SITE_FLAGS_BYTES:
        return f"at most {MAX_SITE_FLAGS_BYTES} bytes serialised (this is {size})"
    return None


@attrs.frozen
class _PutBody:
    """A PUT body: all three fields, types checked by :func:`_checked` (not coerced)."""

    auto_pip: Any
    skip_seconds: Any
    site_flags: Any


@attrs.frozen
class _PatchBody:
    """A PATCH body: any subset of the fields."""

    auto_pip: Any = _ABSENT
    skip_seconds: Any = _ABSENT
    site_flags: Any = _ABSENT


def _checked(body: _PutBody | _PatchBody, *, patch: bool) -> None:
    """Check each present field strictly (``1`` is no boolean, ``"10"`` or ``1.5`` no integer).

    Raises:
        ApiError: 422 ``validation_failed`` with one entry per bad field.
    """
    errors: list[dict[str, str]] = []
    if body.auto_pip is not _ABSENT and not isinstance(body.auto_pip, bool):
        errors.append({"field": "autoPip", "message": "must be true or false"})
    seconds = body.skip_seconds
    if seconds is not _ABSENT and (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not MIN_SKIP_SECONDS <= seconds <= MAX_SKIP_SECONDS
    ):
        errors.append(
            {
                "field": "skipSeconds",
                "message": f"must be an integer from {MIN_SKIP_SECONDS} to {MAX_SKIP_SECONDS}",
            }
        )
    if body.site_flags is not _ABSENT:
        problem = _site_flags_problem(body.site_flags, nullable_hosts=patch)
        if problem is None and not patch:
            problem = _limits_problem(body.site_flags)
        if problem is not None:
            errors.append({"field": "siteFlags", "message": problem})
    if errors:
        _raise_invalid(errors)


def _raise_invalid(errors: list[dict[str, str]]) -> None:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    raise ApiError(422, f"invalid body: {detail}", errors=errors)


def _replacement(body: _PutBody) -> Callable[[SettingsRow], SettingsRow]:
    new = SettingsRow(
        auto_pip=body.auto_pip, skip_seconds=body.skip_seconds, site_flags=body.site_flags
    )
    return lambda _current: new


def _merge(body: _PatchBody) -> Callable[[SettingsRow], SettingsRow]:
    def merged(current: SettingsRow) -> SettingsRow:
        flags = dict(current.site_flags)
        if body.site_flags is not _ABSENT:
            for host, host_flags in body.site_flags.items():
                if host_flags is None:
                    flags.pop(host, None)
                else:
                    flags[host] = host_flags
            problem = _limits_problem(flags)
            if problem is not None:
                _raise_invalid([{"field": "siteFlags", "message": f"after merging: {problem}"}])
        return SettingsRow(
            auto_pip=current.auto_pip if body.auto_pip is _ABSENT else body.auto_pip,
            skip_seconds=(
                current.skip_seconds if body.skip_seconds is _ABSENT else body.skip_seconds
            ),
            site_flags=flags,
        )

    return merged


def _if_match_allows(header: str | None, current: SettingsRow) -> bool:
    """Whether ``If-Match`` (absent: always) matches the ETag of ``current``.

    Compared like :func:`smartpip.http.etags.check_if_match`: a list of tags, ``*`` matches.
    """
    if header is None:
        return True
    etag = etag_for(canonical_body(current))
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def write_settings(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    if_match: str | None,
    change: Callable[[SettingsRow], SettingsRow],
) -> SettingsRow:
    """Lock, check ``If-Match``, change and store the settings, in the caller's transaction.

    Runs in a worker thread (``Database.run``); raising rolls everything back.

    Raises:
        ApiError: 412 when ``if_match`` does not match the stored document; 422 when
            ``change`` refuses the result (a merge past the limits).
        UserGone: The account was deleted.
    """
    current = lock_settings(conn, user_id)
    if not _if_match_allows(if_match, current):
        raise ApiError(412, "the settings changed since you read them (If-Match does not match)")
    new = change(current)
    upsert_settings(conn, user_id, new)
    return new


def _with_etag(settings: SettingsRow) -> Response:
    body = canonical_body(settings)
    return Response(body, content_type="application/json", headers={"ETag": etag_for(body)})


def settings_blueprint(db: Database, guards: Guards, *, reads: Policy, writes: Policy) -> Blueprint:
    """``/v1/settings``: read, replace and merge the signed-in user's settings.

    - ``GET`` answers ``{autoPip, skipSeconds, siteFlags}`` (defaults ``false``, ``10``,
      ``{}`` for a user who never saved any) with an ``ETag``; ``If-None-Match`` gives 304.
    - ``PUT`` replaces the document: all three fields required.
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
    """
    bp = Blueprint("settings", __name__, url_prefix="/v1")

    @bp.get("/settings")
    @guards.user(limit=reads)
    async def get_settings(user: AccessClaims) -> Response:
        try:
            settings = await db.read(select_settings, user.user_id)
        except UserGone:
            raise account_gone() from None
        return json_with_etag(canonical_document(settings))

    @bp.put("/settings")
    @guards.user(limit=writes)
    async def put_settings(user: AccessClaims) -> Response:
        body = structure(await read_json(request), _PutBody, status=422)
        _checked(body, patch=False)
        return await _write(user.user_id, _replacement(body))

    @bp.patch("/settings")
    @guards.user(limit=writes)
    async def patch_settings(user: AccessClaims) -> Response:
        body = structure(await read_json(request), _PatchBody, status=422)
        _checked(body, patch=True)
        return await _write(user.user_id, _merge(body))

    async def _write(user_id: uuid.UUID, change: Callable[[SettingsRow], SettingsRow]) -> Response:
        if_match = request.headers.get("If-Match")
        try:
            settings = await db.run(write_settings, user_id, if_match, change)
        except UserGone:
            raise account_gone() from None
        return _with_etag(settings)

    return bp
