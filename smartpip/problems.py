"""RFC 9457 problem details: the one shape every error of the API takes.

Route code raises :class:`ApiError` (or lets a domain error reach the app's handlers);
the HTTP layer turns it into ``application/problem+json`` with a stable ``code``. The table
below is the only place that pairs codes with statuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus

__all__ = ["CODES", "PROBLEM_JSON", "ApiError", "problem_body", "problem_headers"]

PROBLEM_JSON = "application/problem+json"

#: status -> the API's error code for it (architecture guide, "Error codes").
CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
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
}


class ApiError(Exception):
    """An error the API answers with a problem response.

    Args:
        status: the HTTP status.
        detail: a human-readable explanation (never a token or other secret).
        code: overrides the default code for ``status``.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
        errors: field errors for 422 (``[{"field": ..., "message": ...}]``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or CODES.get(status, "error")
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None


def problem_body(
    status: int,
    detail: str | None,
    *,
    request_id: str,
    code: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
) -> bytes:
    """Serialise a problem document; a 500 carries only the request ID."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    doc: dict[str, object] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "code": code or CODES.get(status, "error"),
        "requestId": request_id,
    }
    if status >= 500 and status not in (502, 503):
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
