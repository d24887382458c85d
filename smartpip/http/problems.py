"""RFC 9457 problem details: the one shape every error of the API takes.

Route code raises :class:`ApiError` (or lets a domain error reach the app's handlers);
the HTTP layer turns it into ``application/problem+json`` with a stable ``code``. The table
below is the only place that pairs codes with statuses.

Every problem document tells a client what to do next, in machine-readable form:

- ``retryable``: whether the *same* request may succeed later (true for 408, 429, 502, 503
  and 504 unless the error says otherwise; false for everything the client must change, and
  for 500, which is a bug);
- ``retryAfter``: the seconds of the ``Retry-After`` header, whenever the response has one;
- extension members of particular errors (``resetsAt`` of the suggest quota, ``errors`` of
  422), documented with the operation in the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus

__all__ = [
    "CODES",
    "PROBLEM_JSON",
    "RETRYABLE_STATUSES",
    "ApiError",
    "problem_body",
    "problem_headers",
    "retry_after_seconds",
]

PROBLEM_JSON = "application/problem+json"

#: status -> the API's error code for it (architecture guide, "Error codes").
CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}

#: Statuses after which repeating the same request later may succeed (RFC 9110 15.5.9,
#: 15.6.3-5; RFC 6585 4): the client waits, it does not change the request.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


class ApiError(Exception):
    """An error the API answers with a problem response.

    Args:
        status: the HTTP status.
        detail: a human-readable explanation (never a token or other secret).
        code: overrides the default code for ``status``.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
        errors: field errors for 422 (``[{"field": ..., "message": ...}]``).
        retryable: overrides the status's default (a 503 that only an operator can fix is
            not retryable).
        extra: extension members of this error (``{"resetsAt": ...}``); never a secret.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        retryable: bool | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or CODES.get(status, "error")
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None
        self.retryable = retryable
        self.extra = dict(extra or {})


def retry_after_seconds(headers: Mapping[str, str] | None) -> int | None:
    """The ``Retry-After`` of ``headers`` in whole seconds, or None (absent, or a date)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            return int(value) if value.isdigit() else None
    return None


def problem_body(
    status: int,
    detail: str | None,
    *,
    request_id: str,
    code: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    retry_after: int | None = None,
    retryable: bool | None = None,
    extra: Mapping[str, object] | None = None,
) -> bytes:
    """Serialise a problem document; a 500 carries only the request ID.

    Args:
        status: the HTTP status.
        detail: the explanation (dropped for 500 and other unexpected 5xx).
        request_id: the request's ID, always included.
        code: the API's error code; the status's default when None.
        errors: field errors (422).
        retry_after: the seconds of the response's ``Retry-After``, echoed as ``retryAfter``.
        retryable: overrides :data:`RETRYABLE_STATUSES` for this status.
        extra: extension members (they never replace the standard ones).
    """
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    doc: dict[str, object] = dict(extra or {})
    doc.update(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "code": code or CODES.get(status, "error"),
            "requestId": request_id,
            "retryable": status in RETRYABLE_STATUSES if retryable is None else retryable,
        }
    )
    if retry_after is not None:
        doc["retryAfter"] = retry_after
    if status >= 500 and status not in (502, 503, 504):
        doc["detail"] = f"internal error; quote request ID {request_id}"
    elif detail:
        doc["detail"] = detail
    if errors is not None:
        doc["errors"] = list(errors)
    return json.dumps(doc, separators=(",", ":")).encode()


def problem_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers every problem response carries, plus ``extra``."""
    headers = {"Content-Type": PROBLEM_JSON, "Cache-Control": "no-store"}
    if extra:
        headers.update(extra)
    return headers
