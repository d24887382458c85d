"""Wall-clock periods: which period a moment falls in, the same answer on every replica.

A scheduled job runs once per *period*, whichever replica gets there first; replicas agree
on the periods because they are computed from the wall clock alone, never from when a
process started:

- :class:`Every` cuts time into fixed lengths aligned to the Unix epoch (plus an offset):
  every 600 s means the periods start at 00:00, 00:10, ... UTC on every replica.
- :class:`Daily` starts a period every day at a wall time in a time zone (03:30 UTC, or
  00:05 America/Los_Angeles). The period runs from that time to the same wall time the next
  local day, so a day with a daylight-saving change gives a 23- or 25-hour period. A wall
  time that does not exist that day (02:30 on the spring-forward night) is read as the
  standard-time offset would read it (``fold=0``), the same way on every replica.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Protocol

import attrs

__all__ = ["Daily", "Every", "Period", "Schedule"]


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is naive: periods are computed from aware times")
    return moment


@attrs.frozen(order=True)
class Period:
    """One run's slice of time, ``[start, end)``, both aware and in UTC.

    Attributes:
        start: when the period begins.
        end: when the next one begins.
    """

    start: dt.datetime
    end: dt.datetime

    @property
    def key(self) -> str:
        """The period's name in claims and logs: its start, RFC 3339 UTC (``...Z``)."""
        return self.start.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

    @property
    def seconds(self) -> float:
        """The period's length."""
        return (self.end - self.start).total_seconds()

    def contains(self, moment: dt.datetime) -> bool:
        """Whether ``moment`` (aware) falls in this period."""
        return self.start <= _aware(moment) < self.end


class Schedule(Protocol):
    """Maps a moment to the period containing it."""

    def period_at(self, moment: dt.datetime) -> Period:
        """The period that contains ``moment`` (aware).

        Raises:
            ValueError: ``moment`` is naive.
        """
        ...

    def describe(self) -> str:
        """A short human description (``every 600s``, ``daily 03:30 UTC``)."""
        ...


@attrs.frozen
class Every:
    """Periods of ``seconds`` aligned to the Unix epoch plus ``offset`` seconds.

    Raises:
        ValueError: ``seconds`` is not positive.
    """

    seconds: float = attrs.field()
    offset: float = 0.0

    @seconds.validator
    def _positive(self, _attribute: object, value: float) -> None:
        if not value > 0:
            raise ValueError(f"a period must be longer than 0 s, got {value}")

    def period_at(self, moment: dt.datetime) -> Period:
        stamp = _aware(moment).timestamp()
        index = math.floor((stamp - self.offset) / self.seconds)
        start = index * self.seconds + self.offset
        return Period(
            dt.datetime.fromtimestamp(start, dt.UTC),
            dt.datetime.fromtimestamp(start + self.seconds, dt.UTC),
        )

    def describe(self) -> str:
        return f"every {self.seconds:g}s"


@attrs.frozen
class Daily:
    """One period a day, from ``at`` (a wall time) in ``zone`` to the same time the next day."""

    at: dt.time
    zone: dt.tzinfo = dt.UTC

    def _start_on(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.at, tzinfo=self.zone).astimezone(dt.UTC)

    def period_at(self, moment: dt.datetime) -> Period:
        local_day = _aware(moment).astimezone(self.zone).date()
        start = self._start_on(local_day)
        if start > moment:
            local_day -= dt.timedelta(days=1)
            start = self._start_on(local_day)
        return Period(start, self._start_on(local_day + dt.timedelta(days=1)))

    def describe(self) -> str:
        return f"daily {self.at.isoformat(timespec='minutes')} {self.zone}"
