"""The client's exceptions and the parsing of Google's error envelope into them.

The hierarchy::

    YouTubeError                  anything the client raises
    ├── QuotaExceeded             403 quotaExceeded / dailyLimitExceeded: spent until midnight PT
    ├── KeyInvalid                400 keyInvalid, or API_KEY_INVALID in error.details[].reason
    ├── Forbidden                 403 forbidden / accessNotConfigured / insufficientPermissions,
    │                             and any other 401 or 403
    ├── BadRequest                any other 4xx
    └── UpstreamFailure           5xx, timeout, connection error, redirect, oversized body,
        │                         malformed JSON, wrong shape (``retryable`` says which)
        └── RateLimited           rateLimitExceeded / userRateLimitExceeded, or a bare 429

``rateLimitExceeded`` is a short-term (per-minute) limit, not the daily quota: it must not open
the breaker until midnight, so it is an :class:`UpstreamFailure` (a cool-down is right). It is
not retried: a retry within a second hits the same limit and every request costs quota units.

Messages never hold the API key nor the request URL (the key is in its query string).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "Forbidden",
    "KeyInvalid",
    "QuotaExceeded",
    "RateLimited",
    "UpstreamFailure",
    "YouTubeError",
    "error_from_answer",
]

_QUOTA = frozenset({"quotaExceeded", "dailyLimitExceeded"})
_KEY_INVALID = frozenset({"keyInvalid", "API_KEY_INVALID"})
_FORBIDDEN = frozenset({"forbidden", "accessNotConfigured", "insufficientPermissions"})
_RATE_LIMITED = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
# Why 200 characters: enough of Google's message for an operator, bounded in logs.
_MESSAGE_CAP = 200


class YouTubeError(Exception):
    """Base of every error of :mod:`smartpip.youtube`.

    Attributes:
        method: ``"search"`` or ``"videos"``.
        status: The HTTP status, or None when no answer arrived.
        reasons: The envelope's ``errors[].reason`` and ``details[].reason``, in order.
    """

    outcome = "error"  # the ``on_call`` outcome label

    def __init__(
        self, message: str, *, method: str, status: int | None = None, reasons: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.method = method
        self.status = status
        self.reasons = reasons


class QuotaExceeded(YouTubeError):
    """The project's daily quota is spent; it resets at midnight Pacific time."""

    outcome = "quota"


class KeyInvalid(YouTubeError):
    """Google rejected the API key (wrong, deleted or restricted)."""

    outcome = "key_invalid"


class Forbidden(YouTubeError):
    """The key may not call this API (API not enabled, permissions)."""

    outcome = "forbidden"


class BadRequest(YouTubeError):
    """Google refused the request itself (a bug on our side, or an odd query)."""

    outcome = "bad_request"


class UpstreamFailure(YouTubeError):
    """No usable answer: 5xx, timeout, connection error, or an answer we cannot use.

    Attributes:
        retryable: True for 5xx, timeouts and connection errors; False for answers that a
            retry would not change (redirect, oversized, malformed, wrong shape).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        retryable: bool,
        status: int | None = None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, method=method, status=status, reasons=reasons)
        self.retryable = retryable


class RateLimited(UpstreamFailure):
    """A short-term rate limit; not the daily quota (see the module docstring)."""


def _reasons(document: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
    """``(reasons, message, status)`` of an error envelope, tolerant of any shape."""
    error = document.get("error")
    if not isinstance(error, dict):
        return (), "", ""
    found: list[str] = []
    for field in ("errors", "details"):
        entries = error.get(field)
        if isinstance(entries, list):
            found.extend(
                entry["reason"]
                for entry in entries
                if isinstance(entry, dict) and isinstance(entry.get("reason"), str)
            )
    message = error.get("message")
    status = error.get("status")
    return (
        tuple(found),
        message if isinstance(message, str) else "",
        status if isinstance(status, str) else "",
    )


def error_from_answer(
    method: str, status: int, document: dict[str, Any], api_key: str
) -> YouTubeError:
    """The typed error for a non-200 answer whose body parsed to ``document`` (maybe ``{}``).

    Args:
        method: ``"search"`` or ``"videos"``.
        status: The HTTP status (not 200, not a redirect).
        document: The parsed body, ``{}`` when it was not a JSON object.
        api_key: Redacted from Google's message, should it ever echo it.
    """
    reasons, message, google_status = _reasons(document)
    if api_key:
        message = message.replace(api_key, "***")
    detail = f"{method}: HTTP {status}"
    if reasons or google_status:
        detail += f" {','.join(reasons) or google_status}"
    if message:
        detail += f": {message[:_MESSAGE_CAP]}"
    seen = set(reasons)
    kwargs: dict[str, Any] = {"method": method, "status": status, "reasons": reasons}
    if seen & _QUOTA:
        return QuotaExceeded(detail, **kwargs)
    if seen & _KEY_INVALID:
        return KeyInvalid(detail, **kwargs)
    if seen & _RATE_LIMITED or status == 429:
        return RateLimited(detail, retryable=False, **kwargs)
    if status >= 500:
        return UpstreamFailure(detail, retryable=True, **kwargs)
    if seen & _FORBIDDEN or status in (401, 403):
        return Forbidden(detail, **kwargs)
    if 400 <= status < 500:
        return BadRequest(detail, **kwargs)
    return UpstreamFailure(detail, retryable=False, **kwargs)  # 1xx, 2xx other than 200
