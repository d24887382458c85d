"""Watch history: the providers we accept, validation of a watched video, the JSON shape.

A body is first structured strictly (:class:`HistoryBody`, unknown keys refused by
:func:`smartpip.http.bodies.structure`), then :func:`validate_entry` checks every field against
the provider table and reports every bad field at once (:class:`InvalidEntry`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from urllib.parse import urlsplit

import attrs

from smartpip.http.bodies import FieldError
from store.history import HistoryRow

__all__ = [
    "KNOWN_PROVIDERS",
    "MAX_FUTURE_SKEW",
    "MAX_TITLE",
    "MAX_URL",
    "OLDEST_WATCH",
    "HistoryBody",
    "InvalidEntry",
    "ProviderRule",
    "could_be_stored",
    "format_time",
    "item_document",
    "select_providers",
    "validate_entry",
]

# Why 300: YouTube caps titles at 100 characters, the others are in the same range; 300 leaves
# room for any platform while keeping a history response small.
MAX_TITLE = 300
# Why 2048: the practical URL limit of browsers and CDNs; a watch page URL is far shorter.
MAX_URL = 2048
# Why 5 minutes: the extension stamps watchedAt with the device's clock, which may run a
# little ahead of ours; more than that is a wrong clock or a forged time that would pin an
# entry to the top of the history.
MAX_FUTURE_SKEW = timedelta(minutes=5)
#: Nothing was watched on these platforms before YouTube existed (2005).
OLDEST_WATCH = datetime(2005, 1, 1, tzinfo=UTC)

# RFC 3339 date-time (section 5.6), with the offset required (hours 00-23, minutes 00-59:
# datetime.fromisoformat alone would take "+05:99" as +06:39). ASCII digits only. Fractions
# beyond microseconds are accepted and truncated.
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
# Printable ASCII without space and backslash (browsers read "\" as "/", which can move the
# host); location.href is always percent-encoded to this.
_URL_CHARS = re.compile(r"[!-\[\]-~]+")
# Format characters that legitimately occur in titles: zero-width (non-)joiner in emoji
# sequences and in Indic and Persian scripts. Bidi overrides and the rest stay refused.
_ALLOWED_FORMAT_CHARS = frozenset("\u200c\u200d")


@attrs.frozen
class ProviderRule:
    """What a provider's videos look like.

    Attributes:
        video_id: The whole video ID must match this.
        hosts: The exact host names a watch URL may have (https only).
    """

    video_id: re.Pattern[str]
    hosts: frozenset[str]


#: Every provider the service knows; the configured allow-list is a subset of these.
KNOWN_PROVIDERS: Mapping[str, ProviderRule] = MappingProxyType(
    {
        "youtube": ProviderRule(
            re.compile(r"[A-Za-z0-9_-]{11}"),
            frozenset(
                {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}
            ),
        ),
        "vimeo": ProviderRule(
            re.compile(r"[0-9]{1,20}"),
            frozenset({"vimeo.com", "www.vimeo.com", "player.vimeo.com"}),
        ),
        # VODs ("v123" or "123") and live channels (Twitch logins: 4-25 of [A-Za-z0-9_]).
        "twitch": ProviderRule(
            re.compile(r"v?[0-9]{1,20}|[A-Za-z0-9_]{4,25}"),
            frozenset({"twitch.tv", "www.twitch.tv", "m.twitch.tv"}),
        ),
        "dailymotion": ProviderRule(
            re.compile(r"[A-Za-z0-9]{1,32}"),
            frozenset({"dailymotion.com", "www.dailymotion.com", "dai.ly"}),
        ),
    }
)


def select_providers(names: Iterable[str]) -> Mapping[str, ProviderRule]:
    """The allow-list for configured provider names (e.g. ``SMARTPIP_HISTORY_PROVIDERS``).

    Args:
        names: Provider names, a subset of :data:`KNOWN_PROVIDERS`.

    Returns:
        The rules of those providers.

    Raises:
        ValueError: A name is unknown, or none is given.
    """
    chosen = [name.strip().lower() for name in names if name.strip()]
    unknown = sorted(set(chosen) - set(KNOWN_PROVIDERS))
    if unknown:
        raise ValueError(
            f"unknown history providers {unknown}; known: {', '.join(sorted(KNOWN_PROVIDERS))}"
        )
    if not chosen:
        raise ValueError("at least one history provider must be allowed")
    return MappingProxyType({name: KNOWN_PROVIDERS[name] for name in chosen})


@attrs.frozen
class HistoryBody:
    """``{provider, videoId, title, url, watchedAt?}`` as sent; only types checked here."""

    provider: str
    video_id: str
    title: str
    url: str
    watched_at: str | None = None


class InvalidEntry(ValueError):
    """One or more fields of a watched video are invalid; ``errors`` has one per field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


def _check_url(url: str, hosts: frozenset[str]) -> str | None:
    """Why ``url`` is refused, or None."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    if not _URL_CHARS.fullmatch(url):
        return "must be a percent-encoded URL without spaces or backslashes"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https":
        return "must be an https URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not contain credentials"
    if port is not None and port != 443:
        return "must not name a port other than 443"
    if parts.hostname not in hosts:
        return f"host must be one of {', '.join(sorted(hosts))}"
    return None


def _clean_title(title: str) -> tuple[str, str | None]:
    """The trimmed title and why it is refused (or None)."""
    trimmed = title.strip()
    if not 1 <= len(trimmed) <= MAX_TITLE:
        return trimmed, f"must be 1 to {MAX_TITLE} characters"
    for char in trimmed:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp") or (
            category == "Cf" and char not in _ALLOWED_FORMAT_CHARS
        ):
            return trimmed, "must not contain control characters"
    return trimmed, None


def _parse_watched_at(text: str, now: datetime) -> tuple[datetime, str | None]:
    """The parsed time and why it is refused (or None)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return now, "must be an RFC 3339 date-time with a time zone"
    date, time, fraction, offset = match.groups()
    micros = f".{(fraction or '0')[:6]:0<6}"
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        when = datetime.fromisoformat(f"{date}T{time}{micros}{zone}")
    except ValueError:
        return now, "must be an RFC 3339 date-time with a time zone"
    if when > now + MAX_FUTURE_SKEW:
        return when, "must not be more than 5 minutes in the future"
    if when < OLDEST_WATCH:
        return when, "must not be before 2005"
    return when.astimezone(UTC), None


def validate_entry(
    body: HistoryBody,
    *,
    now: datetime,
    providers: Mapping[str, ProviderRule] = KNOWN_PROVIDERS,
) -> HistoryRow:
    """Check every field of a watched video against the provider table.

    Args:
        body: The structured body.
        now: The current time (timezone-aware); also the default ``watchedAt``.
        providers: The allowed providers and their rules.

    Returns:
        The row to store: title trimmed, time in UTC.

    Raises:
        InvalidEntry: With one error per bad field (camelCase names).
    """
    errors: list[FieldError] = []
    rule = providers.get(body.provider)
    if rule is None:
        errors.append(FieldError("provider", f"must be one of {', '.join(sorted(providers))}"))
    else:
        if not rule.video_id.fullmatch(body.video_id):
            errors.append(FieldError("videoId", f"is not a valid {body.provider} video ID"))
        url_problem = _check_url(body.url, rule.hosts)
        if url_problem is not None:
            errors.append(FieldError("url", url_problem))
    title, title_problem = _clean_title(body.title)
    if title_problem is not None:
        errors.append(FieldError("title", title_problem))
    watched_at = now
    if body.watched_at is not None:
        watched_at, time_problem = _parse_watched_at(body.watched_at, now)
        if time_problem is not None:
            errors.append(FieldError("watchedAt", time_problem))
    if errors:
        raise InvalidEntry(errors)
    return HistoryRow(
        provider=body.provider,
        video_id=body.video_id,
        title=title,
        url=body.url,
        watched_at=watched_at,
    )


def could_be_stored(provider: str, video_id: str) -> bool:
    """Whether a history row for ``(provider, video_id)`` can exist at all.

    Every stored row passed :func:`validate_entry` with a known provider, so anything else is
    simply absent, without asking the database (which also refuses NUL characters in text).
    """
    rule = KNOWN_PROVIDERS.get(provider)
    return rule is not None and rule.video_id.fullmatch(video_id) is not None


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, microseconds only when there are any."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def item_document(row: HistoryRow) -> dict[str, str]:
    """The JSON of one history item: ``{provider, videoId, title, url, watchedAt}``."""
    return {
        "provider": row.provider,
        "videoId": row.video_id,
        "title": row.title,
        "url": row.url,
        "watchedAt": format_time(row.watched_at),
    }
