"""schemathesis hooks of the contract fuzz run (loaded by the schemathesis process, not pytest).

The OpenAPI document states every rule JSON Schema can express. A few rules depend on the
deployment or on the clock, so a schema-valid request may still be refused for them, and
schemathesis' ``positive_data_acceptance`` check would call that a failure. For *positive*
cases only, these hooks move generated values into what the server accepts, or drop a case
the schema cannot tell apart; negative cases are left alone. Each rule is described in the
document:

- ``watchedAt`` must lie between 2005 and 5 minutes ahead of the server's clock: the year of
  a generated time is replaced by 2020 (a leap year, so a generated 29 February stays valid);
- ``redirectUri`` must be on SMARTPIP_OIDC_REDIRECT_URIS: replaced by the allowed one (sign-in
  and the YouTube consent);
- ``skipSeconds`` must be written as a JSON integer, while JSON Schema's ``integer`` also
  admits ``10.0``: such a float becomes the integer;
- ``q`` must keep a searchable word after normalization, and ``siteFlags`` must fit 8 KiB as
  JSON: cases that do not are dropped (both are rare; the server's own functions decide);
- an ``Idempotency-Key`` of ``POST /v1/youtube/playlist`` already used with another body is
  422: each positive case gets a fresh key.

Generated headers that frame the HTTP message (``Content-Length``, ``Transfer-Encoding``...)
are left out: what the HTTP parser does with them is the server's, tested there.

To reach past the checks a random value never passes, the first positive sign-ins use real
grants and ID tokens, and the first positive refreshes and logouts real refresh tokens, that
the test prepared (``SMARTPIP_FUZZ_DATA``, a JSON file; see ``test_fuzz.py``), and the first
positive YouTube consent callbacks real consents of the fuzz user. The stateful
phase then follows the links from those answers.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis import APIOperation, GenerationMode, HookContext
from schemathesis import Case as AnyCase

from smartpip.settings.model import MAX_HOSTS, MAX_SITE_FLAGS_BYTES
from smartpip.suggest import QueryRejected, normalize_query

_DATA: dict[str, Any] = json.loads(Path(os.environ["SMARTPIP_FUZZ_DATA"]).read_text("utf-8"))
_YEAR = re.compile(r"^[0-9]{4}")
Case = AnyCase[APIOperation[Any, Any, Any, Any]]
_FRAMING = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "expect", "te", "trailer"}
    | {"upgrade", "keep-alive", "proxy-connection"}
)


def _positive(case: Case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


def _fits(flags: dict[str, Any]) -> bool:
    """Whether ``siteFlags`` is within the limits the schema cannot state (size as JSON)."""
    size = len(json.dumps(flags, separators=(",", ":")).encode())
    return len(flags) <= MAX_HOSTS and size <= MAX_SITE_FLAGS_BYTES


def _take(name: str) -> Any:
    pool: list[Any] = _DATA[name]
    return pool.pop(0) if pool else None


@schemathesis.hook
def map_headers(context: HookContext, headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """Leave out generated headers that HTTP itself reads to frame the message.

    Negative cases add random headers, ``Content-Length: Y`` among them: a request the HTTP
    parser refuses before the app with a bare 400 (no problem document, no request ID). That
    is the HTTP layer's behaviour, tested with the server, not an answer of the document's
    operations.
    """
    del context
    if not headers:
        return headers
    return {name: value for name, value in headers.items() if name.lower() not in _FRAMING}


@schemathesis.hook
def filter_case(context: HookContext, case: Case) -> bool:
    """Drop positive cases refused by a rule the schema cannot state (see the module)."""
    del context
    if not _positive(case):
        return True
    operation = case.operation.label
    if operation == "GET /v1/suggest" and isinstance(case.query.get("q"), str):
        try:
            normalize_query(case.query["q"])
        except QueryRejected:
            return False
    if operation == "PUT /v1/settings" and isinstance(case.body, dict):
        flags = case.body.get("siteFlags")
        return not isinstance(flags, dict) or _fits(flags)
    return True


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    """Move positive values into what the deployment and the clock accept (see the module)."""
    del context
    if not _positive(case):
        return case
    operation = case.operation.label
    if operation == "POST /v1/youtube/playlist" and case.headers:
        for name in case.headers:
            if name.lower() == "idempotency-key":
                case.headers[name] = f"fuzz-{uuid.uuid4()}"
    if not isinstance(case.body, dict):
        return case
    body: dict[str, Any] = case.body
    if operation == "POST /v1/history" and isinstance(body.get("watchedAt"), str):
        body["watchedAt"] = _YEAR.sub("2020", body["watchedAt"])
    elif operation in ("PUT /v1/settings", "PATCH /v1/settings"):
        seconds = body.get("skipSeconds")
        if isinstance(seconds, float) and seconds.is_integer():
            body["skipSeconds"] = int(seconds)
    elif operation == "POST /v1/auth/oidc/callback":
        prepared = _take("callbacks")
        if prepared is not None:
            case.body = prepared
        elif "redirectUri" in body:
            body["redirectUri"] = _DATA["redirectUri"]
    elif operation == "POST /v1/youtube/connect/callback":
        consent = _take("consents")
        if consent is not None:
            case.body = consent
        elif "redirectUri" in body:
            body["redirectUri"] = _DATA["redirectUri"]
    elif operation == "POST /v1/youtube/connect/start" and "redirectUri" in body:
        body["redirectUri"] = _DATA["redirectUri"]
    elif operation in ("POST /v1/auth/refresh", "POST /v1/auth/logout"):
        token = _take("refreshTokens")
        if token is not None:
            body["refreshToken"] = token
    return case
