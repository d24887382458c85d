"""Entity tags for conditional requests: ``ETag``, ``If-None-Match`` (304), ``If-Match`` (412).

Tags are strong, derived from the exact JSON body the route answers with (:func:`json_body`),
so equal representations always carry equal tags on every replica. :func:`if_match_allows` is
the ``If-Match`` comparison without the request, for a service that must compare inside its
own transaction (after locking what it compares against).
"""

from __future__ import annotations

import hashlib
import json

from quart import Response, request

__all__ = ["etag_for", "if_match_allows", "json_body", "json_with_etag"]


def etag_for(body: bytes) -> str:
    """A strong ETag for a response body."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def json_body(document: object) -> bytes:
    """The exact bytes a route answers for ``document`` (compact JSON, UTF-8): what is hashed."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _listed(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def json_with_etag(document: object) -> Response:
    """``document`` as JSON with its ETag; 304 without a body when ``If-None-Match`` matches."""
    body = json_body(document)
    etag = etag_for(body)
    if _listed(request.headers.get("If-None-Match"), etag):
        return Response(b"", status=304, headers={"ETag": etag})
    return Response(body, content_type="application/json", headers={"ETag": etag})


def if_match_allows(header: str | None, current: object) -> bool:
    """Whether an ``If-Match`` value lets a write of the resource ``current`` proceed.

    Args:
        header: The ``If-Match`` field value, or None when the request has none (the write
            proceeds: last write wins).
        current: The document a GET would answer now; its ETag is compared.

    Returns:
        True when ``header`` is None, is ``*``, or lists the ETag of ``current``.
    """
    return header is None or _listed(header, etag_for(json_body(current)))
