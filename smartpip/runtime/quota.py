"""``smartpip quota history``: the YouTube quota spent per Pacific day, for operators.

Reads the rows the ``quota`` job saves to Postgres (``store.quota_days``, one per day) and
today's live counter in Redis, with the budget in searches and in units (``store.quota``).
"""

from __future__ import annotations

import datetime as dt

from smartpip.runtime.resources import Resources
from smartpip.suggest.quota import pacific_day
from store.postgres import DatabaseUnavailable
from store.quota import budget_units, quota_usage, searches_left
from store.quota_days import select_quota_days
from store.redis import RedisUnavailable

__all__ = ["quota_history"]


async def quota_history(resources: Resources, days: int = 30) -> dict[str, object]:
    """Today's live usage and the saved usage of the latest ``days`` days, newest first.

    A store that does not answer is reported in the document (``liveError``,
    ``historyError``), not raised.

    Raises:
        ValueError: ``days`` below 1.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    config = resources.config
    today = pacific_day(dt.datetime.fromtimestamp(resources.clock(), dt.UTC))
    budget = budget_units(config.suggest_daily_budget)
    report: dict[str, object] = {
        "today": today,
        "budgetSearches": config.suggest_daily_budget,
        "budgetUnits": budget,
    }
    try:
        live = await quota_usage(resources.redis, today)
    except RedisUnavailable as error:
        report["liveError"] = str(error)
    else:
        report["live"] = {
            "searches": live.searches,
            "units": live.units,
            "playlistUnits": live.playlist_units,
            "searchesLeft": searches_left(budget, live.units),
        }
    try:
        rows = await resources.db.run(select_quota_days, days)
    except DatabaseUnavailable as error:
        report["historyError"] = str(error)
    else:
        report["days"] = [
            {
                "day": row.day.isoformat(),
                "searches": row.searches,
                "units": row.units,
                "playlistUnits": row.playlist_units,
                "updatedAt": row.updated_at.astimezone(dt.UTC).isoformat(),
            }
            for row in rows
        ]
    return report
