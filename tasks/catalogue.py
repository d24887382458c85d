"""The scheduled jobs of the service: their names, default periods, kinds and deadlines.

One table, read by the configuration (to check ``SMARTPIP_JOBS_PAUSED`` and
``SMARTPIP_JOBS_SCHEDULE``), by the supervision tree (``smartpip/runtime/jobs.py`` builds each
job from it) and by ``smartpip jobs list``. What each job does and why its period:
``docs/jobs.md``.

Schedules are written ``every <n><s|m|h|d>`` (``every 10m``) or ``daily <HH:MM> <zone>``
(``daily 03:30 UTC``, ``daily 23:05 America/Los_Angeles``).
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from supervisors import Daily, Every, Schedule

__all__ = ["JOBS", "JobDefaults", "parse_schedule"]


@attrs.frozen
class JobDefaults:
    """A job's defaults.

    Attributes:
        schedule: its periods (``SMARTPIP_JOBS_SCHEDULE`` overrides).
        kind: ``claim`` (cheap, idempotent: once per period, whoever claims it first) or
            ``lease`` (must complete: a fenced lease in Postgres, taken over when it lapses).
        deadline: seconds one run may take.
        about: one line for operators.
    """

    schedule: Schedule
    kind: str
    deadline: float
    about: str


#: Every scheduled job, by name. Later issues add theirs here.
JOBS: dict[str, JobDefaults] = {
    # Why every 10 minutes: half the default freshness (20 min), so a popular query is
    # refreshed by the run before it goes stale. Why 240 s: a refresh takes under a second
    # when YouTube is healthy; a run past 4 minutes is stuck behind a failing YouTube, and
    # cancelling it leaves the rest of the period free (the next run tries again).
    "warm": JobDefaults(
        schedule=Every(600),
        kind="claim",
        deadline=240.0,
        about="refresh the most asked suggest queries before they go stale (docs/jobs.md)",
    ),
}

_EVERY = re.compile(r"every\s+(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_DAILY = re.compile(r"daily\s+(\d{1,2}):(\d{2})(?:\s+(\S+))?", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_schedule(text: str) -> Schedule:
    """``every 10m`` or ``daily 03:30 UTC`` as a schedule.

    Raises:
        ValueError: the text is neither, or names an unknown time zone.
    """
    text = text.strip()
    every = _EVERY.fullmatch(text)
    if every is not None:
        seconds = float(every[1]) * _UNITS[every[2].lower()]
        if seconds < 1:
            raise ValueError("a period of at least 1 s")
        return Every(seconds)
    daily = _DAILY.fullmatch(text)
    if daily is not None:
        hour, minute, zone_name = int(daily[1]), int(daily[2]), daily[3] or "UTC"
        if hour > 23 or minute > 59:
            raise ValueError(f"{daily[1]}:{daily[2]} is not a time of day")
        try:
            zone: dt.tzinfo = dt.UTC if zone_name.upper() == "UTC" else ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone_name!r}") from None
        return Daily(dt.time(hour, minute), zone)
    raise ValueError("write 'every <n><s|m|h|d>' or 'daily <HH:MM> <zone>'")
