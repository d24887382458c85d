"""Strict JSON request bodies: what the standard library accepts but an API must refuse.

``json.loads`` happily returns ``NaN``, ``Infinity``, ``1e999`` (as infinity), strings with
lone surrogates, duplicate keys (last wins) and recurses until ``RecursionError``. Every one
of those is a 400 here, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from quart import Request

from smartpip.http.problems import ApiError

__all__ = ["MAX_DEPTH", "parse_json", "read_json"]

# Why 32: our documents are flat objects with one level of nesting (siteFlags); 32 leaves
# room while keeping the validation walk trivially cheap.
MAX_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _check(value: Any) -> None:
    """Walk the document iteratively: bounded depth, no lone surrogates or NULs in strings."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError("NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("lone surrogate in string") from None


def parse_json(body: bytes) -> Any:
    """Parse ``body`` strictly.

    Raises:
        ApiError: 400 ``invalid_request`` naming what is wrong.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not valid UTF-8") from None
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
        _check(value)
    except RecursionError:
        raise ApiError(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"invalid JSON: {error}") from None
    return value


async def read_json(request: Request) -> Any:
    """Read and strictly parse the JSON body of ``request``.

    Raises:
        ApiError: 415 for a non-JSON content type, 400 for malformed JSON. Oversized bodies
            are refused with 413 before this point (``MAX_CONTENT_LENGTH``).
    """
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "send the body as application/json")
    body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    return parse_json(body)
