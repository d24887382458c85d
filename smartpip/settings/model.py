"""Extension settings: the document, its validation rules, PUT replace and PATCH merge.

The document is ``{autoPip, skipSeconds, siteFlags, historyRetentionDays, historyPaused}``.
:func:`canonical_document` sorts hosts and flag names, so its JSON
(:func:`smartpip.http.etags.json_body`) is both the response body and the input of the
``ETag``: equal documents carry equal tags on every replica.

A body is first structured strictly (:class:`PutBody` or :class:`PatchBody`, unknown keys
refused by :func:`smartpip.http.bodies.structure`; the fields stay untyped so that nothing is
coerced), then :func:`validate_put` or :func:`validate_patch` checks every present field and
reports every bad one at once (:class:`InvalidSettings`). A PATCH is applied to the stored
document by :func:`merge`, which checks the limits again on the result; a PUT by
:func:`replaced`. Pure functions: no I/O.

The two history fields came later (``historyRetentionDays``: ``null`` keeps the last five
whatever their age, or 1, 7, 30 or 90 days; ``historyPaused``: while true, nothing is
recorded). A PUT may leave them out, and then keeps their stored values: an extension that
predates them replaces the three fields it knows without silently resuming a paused history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from smartpip.http.bodies import FieldError
from store.settings import HISTORY_RETENTION_DAYS, SettingsRow, SiteFlags

__all__ = [
    "MAX_FLAGS_PER_HOST",
    "MAX_HOSTS",
    "MAX_HOST_CHARS",
    "MAX_SITE_FLAGS_BYTES",
    "MAX_SKIP_SECONDS",
    "MIN_SKIP_SECONDS",
    "InvalidSettings",
    "PatchBody",
    "PutBody",
    "SettingsPatch",
    "SettingsPut",
    "SiteFlagsPatch",
    "canonical_document",
    "merge",
    "replaced",
    "validate_patch",
    "validate_put",
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

#: A PATCH's ``siteFlags``: host -> its new flags, or None to remove the host.
SiteFlagsPatch = Mapping[str, Mapping[str, bool] | None]


class InvalidSettings(ValueError):
    """One or more fields are invalid; ``errors`` has one per field (camelCase names)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors


@attrs.frozen
class PutBody:
    """A PUT body as sent: the first three fields required, the history ones optional; types
    checked by :func:`validate_put`."""

    auto_pip: Any
    skip_seconds: Any
    site_flags: Any
    history_retention_days: Any = _ABSENT
    history_paused: Any = _ABSENT


@attrs.frozen
class PatchBody:
    """A PATCH body as sent: any subset of the fields, checked by :func:`validate_patch`."""

    auto_pip: Any = _ABSENT
    skip_seconds: Any = _ABSENT
    site_flags: Any = _ABSENT
    history_retention_days: Any = _ABSENT
    history_paused: Any = _ABSENT


@attrs.frozen
class SettingsPut:
    """A valid PUT.

    Attributes:
        settings: The document as sent (a history field not sent holds its default here).
        sent_retention: ``historyRetentionDays`` was sent (else the stored value stays).
        sent_paused: ``historyPaused`` was sent (else the stored value stays).
    """

    settings: SettingsRow
    sent_retention: bool = True
    sent_paused: bool = True


@attrs.frozen
class SettingsPatch:
    """A valid PATCH: None for a field that was not sent.

    Attributes:
        auto_pip: The new ``autoPip``.
        skip_seconds: The new ``skipSeconds``.
        site_flags: Per host, its new flags (replacing the host's flags as a whole) or None
            (removing the host); hosts not mentioned stay.
        sets_retention: ``historyRetentionDays`` was sent (``null`` is a value there).
        history_retention_days: The new ``historyRetentionDays`` when ``sets_retention``.
        history_paused: The new ``historyPaused``.
    """

    auto_pip: bool | None = None
    skip_seconds: int | None = None
    site_flags: SiteFlagsPatch | None = None
    sets_retention: bool = False
    history_retention_days: int | None = None
    history_paused: bool | None = None


def canonical_document(settings: SettingsRow) -> dict[str, object]:
    """The API document of ``settings``, with hosts and flag names in sorted order."""
    return {
        "autoPip": settings.auto_pip,
        "skipSeconds": settings.skip_seconds,
        "siteFlags": _sorted_flags(settings.site_flags),
        "historyRetentionDays": settings.history_retention_days,
        "historyPaused": settings.history_paused,
    }


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


def _field_errors(body: PutBody | PatchBody, *, patch: bool) -> list[FieldError]:
    """One error per bad present field, strictly (``1`` is no boolean, ``10.0`` no integer)."""
    errors: list[FieldError] = []
    if body.auto_pip is not _ABSENT and not isinstance(body.auto_pip, bool):
        errors.append(FieldError("autoPip", "must be true or false"))
    seconds = body.skip_seconds
    if seconds is not _ABSENT and (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not MIN_SKIP_SECONDS <= seconds <= MAX_SKIP_SECONDS
    ):
        errors.append(
            FieldError(
                "skipSeconds",
                f"must be an integer from {MIN_SKIP_SECONDS} to {MAX_SKIP_SECONDS}",
            )
        )
    retention = body.history_retention_days
    if (
        retention is not _ABSENT
        and retention is not None
        and (
            not isinstance(retention, int)
            or isinstance(retention, bool)
            or retention not in HISTORY_RETENTION_DAYS
        )
    ):
        days = ", ".join(str(d) for d in HISTORY_RETENTION_DAYS)
        errors.append(
            FieldError(
                "historyRetentionDays",
                f"must be null (keep the last five) or one of {days} (days, an integer)",
            )
        )
    if body.history_paused is not _ABSENT and not isinstance(body.history_paused, bool):
        errors.append(FieldError("historyPaused", "must be true or false"))
    if body.site_flags is not _ABSENT:
        problem = _site_flags_problem(body.site_flags, nullable_hosts=patch)
        if problem is None and not patch:
            problem = _limits_problem(body.site_flags)
        if problem is not None:
            errors.append(FieldError("siteFlags", problem))
    return errors


def validate_put(body: PutBody) -> SettingsPut:
    """Check a PUT body; the document it replaces the stored one with (:func:`replaced`).

    Raises:
        InvalidSettings: With one error per bad field.
    """
    errors = _field_errors(body, patch=False)
    if errors:
        raise InvalidSettings(errors)
    sent_retention = body.history_retention_days is not _ABSENT
    sent_paused = body.history_paused is not _ABSENT
    return SettingsPut(
        SettingsRow(
            auto_pip=body.auto_pip,
            skip_seconds=body.skip_seconds,
            site_flags=body.site_flags,
            history_retention_days=body.history_retention_days if sent_retention else None,
            history_paused=body.history_paused if sent_paused else False,
        ),
        sent_retention=sent_retention,
        sent_paused=sent_paused,
    )


def replaced(current: SettingsRow, put: SettingsPut) -> SettingsRow:
    """The document a PUT leaves: ``put``'s, with the history fields it did not send kept."""
    new = put.settings
    return attrs.evolve(
        new,
        history_retention_days=new.history_retention_days
        if put.sent_retention
        else current.history_retention_days,
        history_paused=new.history_paused if put.sent_paused else current.history_paused,
    )


def validate_patch(body: PatchBody) -> SettingsPatch:
    """Check a PATCH body (a host may map to ``null``); the limits are checked by :func:`merge`.

    Raises:
        InvalidSettings: With one error per bad field.
    """
    errors = _field_errors(body, patch=True)
    if errors:
        raise InvalidSettings(errors)

    def given(value: Any) -> Any:
        return None if value is _ABSENT else value

    return SettingsPatch(
        auto_pip=given(body.auto_pip),
        skip_seconds=given(body.skip_seconds),
        site_flags=given(body.site_flags),
        sets_retention=body.history_retention_days is not _ABSENT,
        history_retention_days=given(body.history_retention_days),
        history_paused=given(body.history_paused),
    )


def merge(current: SettingsRow, patch: SettingsPatch) -> SettingsRow:
    """``current`` with ``patch`` applied: fields replaced, ``siteFlags`` merged per host.

    Raises:
        InvalidSettings: The merged ``siteFlags`` is past the limits (hosts or size).
    """
    flags = dict(current.site_flags)
    if patch.site_flags is not None:
        for host, host_flags in patch.site_flags.items():
            if host_flags is None:
                flags.pop(host, None)
            else:
                flags[host] = host_flags
        problem = _limits_problem(flags)
        if problem is not None:
            raise InvalidSettings([FieldError("siteFlags", f"after merging: {problem}")])
    return SettingsRow(
        auto_pip=current.auto_pip if patch.auto_pip is None else patch.auto_pip,
        skip_seconds=current.skip_seconds if patch.skip_seconds is None else patch.skip_seconds,
        site_flags=flags,
        history_retention_days=patch.history_retention_days
        if patch.sets_retention
        else current.history_retention_days,
        history_paused=current.history_paused
        if patch.history_paused is None
        else patch.history_paused,
    )
