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
        retry_after: seconds before a run that did not succeed is tried again in its period.
    """

    schedule: Schedule
    kind: str
    deadline: float
    about: str
    retry_after: float = 60.0


#: Every scheduled job, by name. Later issues add theirs here.
JOBS: dict[str, JobDefaults] = {
    # Why every minute: it bounds the quota usage Redis can lose (what was counted since the
    # last save) to a minute of searches, for two reads and two small upserts a minute.
    # Why 30 s: well within the period, so a run stuck on a slow store ends before the next.
    "quota": JobDefaults(
        schedule=Every(60),
        kind="claim",
        deadline=30.0,
        about="save the day's YouTube quota usage to Postgres; restore Redis's counter if lost",
    ),
    # Why hourly: the shortest history retention a user can choose is a day, so an hour late
    # is close enough; each run is small (a backlog drains over several, see tasks/cleanup).
    # Why 15 minutes: a capped run (4 kinds x 100 batches) takes seconds; far past that the
    # database is struggling, and the next period tries again.
    "cleanup": JobDefaults(
        schedule=Every(3600),
        kind="claim",
        deadline=900.0,
        about="delete expired sessions, old audit rows and job runs, history past each "
        "user's retention (bounded batches)",
    ),
    # A lease: a backup must complete, once a night across replicas (docs/backups.md).
    # Why 03:30 UTC: the quietest hour of the service; why 4 h: a dump, its upload, the
    # verification download and a restore drill of a database far larger than today's.
    "backup": JobDefaults(
        schedule=Daily(dt.time(3, 30), dt.UTC),
        kind="lease",
        deadline=4 * 3600.0,
        about="pg_dump to S3, verified; retention; a restore drill every "
        "SMARTPIP_BACKUP_DRILL_DAYS (off without SMARTPIP_BACKUP_S3_BUCKET)",
        # Why 15 min: each attempt dumps the whole database; a cause that a minute fixes
        # (a blip) is rare, and a persistent one should not log an error every minute.
        retry_after=900.0,
    ),
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
