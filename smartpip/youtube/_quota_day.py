"""The YouTube quota day: Pacific time (``America/Los_Angeles``), reset at midnight.

Every feature that spends the project's daily YouTube quota (suggest's searches, playlist
writes) counts it per Pacific day and tells clients when it resets.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

__all__ = ["PACIFIC", "next_pacific_midnight", "pacific_day", "seconds_until_pacific_midnight"]

PACIFIC = ZoneInfo("America/Los_Angeles")


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")


def pacific_day(now: datetime) -> str:
    """The Pacific-time date of ``now`` (``YYYY-MM-DD``): the YouTube quota day.

    Raises:
        ValueError: ``now`` is naive.
    """
    _require_aware(now)
    return now.astimezone(PACIFIC).date().isoformat()


def next_pacific_midnight(now: datetime) -> datetime:
    """The next midnight Pacific time after ``now``, in UTC (when the daily quota resets).

    Raises:
        ValueError: ``now`` is naive.
    """
    _require_aware(now)
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), dtime(0), tzinfo=PACIFIC)
    return midnight.astimezone(UTC)


def seconds_until_pacific_midnight(now: datetime) -> int:
    """Whole seconds (rounded up, at least 1) until the next midnight Pacific time.

    Computed in UTC, so 23-hour and 25-hour days (DST changes) come out right.

    Raises:
        ValueError: ``now`` is naive.
    """
    # Subtract in UTC: aware datetimes sharing a tzinfo subtract as wall-clock times.
    delta = next_pacific_midnight(now) - now.astimezone(UTC)
    return max(1, math.ceil(delta.total_seconds()))
