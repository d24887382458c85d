"""The Pacific quota day and the seconds to its end, including the 23 h and 25 h DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from smartpip.suggest.quota import PACIFIC, pacific_day, seconds_until_pacific_midnight


def utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (utc(2024, 7, 1, 6, 59, 59), "2024-06-30"),  # PDT (UTC-7): 23:59:59 the day before
        (utc(2024, 7, 1, 7, 0, 0), "2024-07-01"),
        (utc(2024, 1, 15, 7, 59, 59), "2024-01-14"),  # PST (UTC-8)
        (utc(2024, 1, 15, 8, 0, 0), "2024-01-15"),
        (datetime(2024, 1, 15, 1, 0, tzinfo=timezone(timedelta(hours=9))), "2024-01-14"),
    ],
)
def test_pacific_day(now: datetime, day: str) -> None:
    assert pacific_day(now) == day


def test_midnight_on_ordinary_days() -> None:
    assert seconds_until_pacific_midnight(utc(2024, 7, 1, 7, 0, 0)) == 24 * 3600  # PDT
    assert seconds_until_pacific_midnight(utc(2024, 1, 15, 8, 0, 0)) == 24 * 3600  # PST
    assert seconds_until_pacific_midnight(utc(2024, 7, 1, 6, 59, 59)) == 1
    # Rounded up, and never 0 (a Retry-After of 0 would invite an immediate retry).
    assert seconds_until_pacific_midnight(utc(2024, 7, 1, 6, 59, 59, 500_000)) == 1
    assert seconds_until_pacific_midnight(utc(2024, 7, 1, 6, 59, 58, 1)) == 2


def test_spring_forward_day_has_23_hours() -> None:
    # 2024-03-10: 02:00 PST jumps to 03:00 PDT. Its midnight is 08:00 UTC, the next 07:00 UTC.
    start = utc(2024, 3, 10, 8, 0, 0)
    assert pacific_day(start) == "2024-03-10"
    assert seconds_until_pacific_midnight(start) == 23 * 3600
    # Given in Pacific time itself (same tzinfo as the computed midnight): still right.
    noon = datetime(2024, 3, 10, 12, 0, tzinfo=PACIFIC)
    assert seconds_until_pacific_midnight(noon) == 12 * 3600
    assert pacific_day(utc(2024, 3, 11, 6, 59, 59)) == "2024-03-10"
    assert pacific_day(utc(2024, 3, 11, 7, 0, 0)) == "2024-03-11"


def test_fall_back_day_has_25_hours() -> None:
    # 2024-11-03: 02:00 PDT falls back to 01:00 PST. Midnight 07:00 UTC, the next 08:00 UTC.
    start = utc(2024, 11, 3, 7, 0, 0)
    assert pacific_day(start) == "2024-11-03"
    assert seconds_until_pacific_midnight(start) == 25 * 3600
    noon = datetime(2024, 11, 3, 12, 0, tzinfo=PACIFIC)
    assert seconds_until_pacific_midnight(noon) == 12 * 3600
    assert pacific_day(utc(2024, 11, 4, 7, 59, 59)) == "2024-11-03"
    assert pacific_day(utc(2024, 11, 4, 8, 0, 0)) == "2024-11-04"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pacific_day(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        seconds_until_pacific_midnight(datetime(2024, 1, 1))
