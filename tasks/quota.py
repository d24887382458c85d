"""Quota bookkeeping: the day's YouTube quota usage saved to Postgres and restored from it.

Redis holds the live counter of a Pacific day (``store.quota``); Redis is allowed to lose
it (a restart without persistence, an eviction, a flush), and a lost counter would hand the
day's budget out again. So:

- **persist** (:func:`persist_quota`, the ``quota`` job, every minute on one replica): copy
  today's and yesterday's counters (searches, units, and the playlists' units) to Postgres
  (``store.quota_days``; yesterday so that the last minute before midnight Pacific is saved
  too). Rows only grow, so saves by any replica, repeated or late, are harmless.
- **restore**: put the saved usage back into Redis, each counter becoming ``max(redis,
  saved)`` in one script, never lowered. It happens at the first of:
    - the next reservation (``QuotaGate``): a reservation, or the units of a search in
      flight, that finds today's counter missing calls :func:`restore_day` before counting,
      so nothing is counted on an empty counter while Postgres answers;
    - the next ``quota`` run, which restores today's counter whenever Redis holds less than
      Postgres (this also repairs a counter restarted while Postgres was unavailable).

What can be lost: the usage counted since the last save, when Redis loses the counter
(about one period of the job, a minute, of spending), more only when the job did not run
or the counter came back without a restore (``docs/jobs.md`` lists the cases). The day's
rows are also the operators' usage history (``smartpip quota history``).

The functions take the two stores as small protocols (:class:`QuotaCounters`,
:class:`QuotaSaves`) so the logic runs against in-memory fakes under trio's MockClock and
against the real Redis and Postgres through :class:`RedisCounters` and
:class:`PostgresSaves`.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import attrs

from store.postgres import Database
from store.quota import QuotaUsage, quota_usage, restore_usage
from store.quota_days import save_quota_day, select_quota_day
from store.redis import RedisStore

__all__ = [
    "DayReport",
    "PostgresSaves",
    "QuotaCounters",
    "QuotaSaves",
    "RedisCounters",
    "persist_day",
    "persist_quota",
    "previous_day",
    "restore_day",
]


class QuotaCounters(Protocol):
    """The live counters (Redis)."""

    async def usage(self, day: str) -> QuotaUsage:
        """``day``'s counters (zeros when there are none)."""
        ...

    async def restore(self, day: str, saved: QuotaUsage) -> QuotaUsage:
        """Raise ``day``'s counters to ``saved`` where lower (never lower one); the result."""
        ...


class QuotaSaves(Protocol):
    """The saved usage per day (Postgres)."""

    async def saved(self, day: str) -> QuotaUsage | None:
        """``day``'s saved usage, None when nothing was saved."""
        ...

    async def save(self, day: str, usage: QuotaUsage) -> bool:
        """Raise ``day``'s saved usage to ``usage`` where higher; whether it grew."""
        ...


@attrs.frozen
class RedisCounters:
    """:class:`QuotaCounters` over ``store.quota``."""

    store: RedisStore

    async def usage(self, day: str) -> QuotaUsage:
        return await quota_usage(self.store, day)

    async def restore(self, day: str, saved: QuotaUsage) -> QuotaUsage:
        return await restore_usage(self.store, day, saved)


@attrs.frozen
class PostgresSaves:
    """:class:`QuotaSaves` over ``store.quota_days``."""

    db: Database

    async def saved(self, day: str) -> QuotaUsage | None:
        row = await self.db.run(select_quota_day, dt.date.fromisoformat(day))
        if row is None:
            return None
        return QuotaUsage(row.searches, row.units, playlist_units=row.playlist_units)

    async def save(self, day: str, usage: QuotaUsage) -> bool:
        day_ = dt.date.fromisoformat(day)
        return await self.db.run(
            save_quota_day, day_, usage.searches, usage.units, usage.playlist_units
        )


@attrs.frozen
class DayReport:
    """What one day's persist did.

    Attributes:
        day: The Pacific day, ``YYYY-MM-DD``.
        usage: Its counters in Redis after the restore (what was saved).
        restored: Redis held less than Postgres and was raised to it.
        saved: The Postgres row was created or grew.
    """

    day: str
    usage: QuotaUsage
    restored: bool
    saved: bool


def previous_day(day: str) -> str:
    """The day before ``day`` (``YYYY-MM-DD``)."""
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


def _below(usage: QuotaUsage, saved: QuotaUsage) -> bool:
    return (
        usage.searches < saved.searches
        or usage.units < saved.units
        or usage.playlist_units < saved.playlist_units
    )


async def restore_day(day: str, counters: QuotaCounters, saves: QuotaSaves) -> QuotaUsage | None:
    """Put ``day``'s saved usage back into Redis (``max`` per counter, never lowering one).

    The quota gate calls it when a reservation finds the day's counter missing.

    Returns:
        The counters after the restore; None when nothing was saved for ``day`` (then Redis
        is left as it is).

    Raises:
        DatabaseUnavailable: Postgres is down or too slow.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    saved = await saves.saved(day)
    if saved is None:
        return None
    return await counters.restore(day, saved)


async def persist_day(
    day: str, counters: QuotaCounters, saves: QuotaSaves, *, restore: bool
) -> DayReport:
    """Save ``day``'s counters to Postgres; with ``restore``, first raise Redis to the save.

    Raises:
        DatabaseUnavailable: Postgres is down or too slow.
        RedisUnavailable: Redis is down, too slow, or refused a script.
    """
    saved = await saves.saved(day)
    usage = await counters.usage(day)
    restored = False
    if restore and saved is not None and _below(usage, saved):
        # Redis lost (part of) the day: the restore script takes max() per counter, so a
        # reservation counted between the read and here is kept.
        usage = await counters.restore(day, saved)
        restored = True
    grew = False
    if usage.searches or usage.units:
        grew = await saves.save(day, usage)
    return DayReport(day=day, usage=usage, restored=restored, saved=grew)


async def persist_quota(
    today: str, counters: QuotaCounters, saves: QuotaSaves
) -> dict[str, object]:
    """One run of the ``quota`` job: save yesterday's and today's usage, restoring today's.

    Args:
        today: The current Pacific day, ``YYYY-MM-DD``.
        counters: The live counters.
        saves: The saved usage.

    Returns:
        A small summary for the job's log line.

    Raises:
        DatabaseUnavailable: Postgres is down or too slow (the run fails; the next runs).
        RedisUnavailable: Redis is down, too slow, or refused a script.
    """
    # Yesterday first, never restored: nothing spends on it any more but a replica whose
    # clock is a little behind, and its final count belongs in the history.
    before = await persist_day(previous_day(today), counters, saves, restore=False)
    now = await persist_day(today, counters, saves, restore=True)
    return {
        "day": now.day,
        "searches": now.usage.searches,
        "units": now.usage.units,
        "restored": now.restored,
        "saved": [report.day for report in (before, now) if report.saved],
    }
