"""Entity tags for conditional requests: ``ETag``, ``If-None-Match`` (304), ``If-Match`` (412).

Tags are strong, derived from the exact JSON body the route answers with, so equal
representations always carry equal tags on every replica.
"""

from __future__ import annotations

import hashlib
import json

from quart import Response, request

from smartpip.http.problems import ApiError

__all__ = ["check_if_match", "etag_for", "json_with_etag"]


def etag_for(body: bytes) -> str:
    """A strong ETag for a response body."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _listed(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def json_with_etag(document: object) -> Response:
    """``document`` as JSON with its ETag; 304 without a body when ``If-None-Match`` matches."""
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    etag = etag_for(body)
    if _listed(request.headers.get("If-None-Match"), etag):
        return Response(b"", status=304, headers={"ETag": etag})
    return Response(body, content_type="application/json", headers={"ETag": etag})


def check_if_match(current: object) -> None:
    """Refuse a write (412) when ``If-Match`` is present and does not match ``current``.

    ``current`` is the document a GET would answer now; its ETag is compared. Without an
    ``If-Match`` header the write proceeds (last write wins).

    Raises:
        ApiError: 412 ``precondition_failed``.
    """
    header = request.headers.get("If-Match")
    if header is None:
        return
    body = json.dumps(current, separators=(",", ":"), ensure_ascii=False).encode()
    if not _listed(header, etag_for(body)):
        raise ApiError(412, "the resource changed since you read it (If-Match does not match)")
