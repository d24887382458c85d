"""The YouTube quota spent per Pacific day, saved in Postgres (``quota_days``).

Redis keeps the live counters (:mod:`store.quota`); these rows keep a copy that survives a
Redis restart, and the history operators read. Concurrency rule, enforced by the one upsert:
a counter only grows (``GREATEST``), so saves from any number of replicas, repeated, late
or out of order, never lower a row, and a save with nothing new writes nothing.

Query functions take a connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import psycopg
from psycopg.rows import class_row

__all__ = ["QuotaDayRow", "save_quota_day", "select_quota_day", "select_quota_days"]


@attrs.frozen
class QuotaDayRow:
    """One day's saved usage.

    Attributes:
        day: The Pacific-time date.
        searches: ``search.list`` calls reserved.
        units: Quota units spent.
        updated_at: When a counter last grew.
        playlist_units: The part of ``units`` playlist writes spent.
    """

    day: dt.date
    searches: int
    units: int
    updated_at: dt.datetime
    playlist_units: int = 0


SAVE_QUOTA_DAY = """
INSERT INTO quota_days AS q (day, searches, units, playlist_units)
VALUES (%(day)s, %(searches)s, %(units)s, %(playlist_units)s)
ON CONFLICT (day) DO UPDATE
    SET searches = GREATEST(q.searches, EXCLUDED.searches),
        units = GREATEST(q.units, EXCLUDED.units),
        playlist_units = GREATEST(q.playlist_units, EXCLUDED.playlist_units),
        updated_at = now()
    WHERE EXCLUDED.searches > q.searches OR EXCLUDED.units > q.units
        OR EXCLUDED.playlist_units > q.playlist_units
"""


def save_quota_day(
    conn: psycopg.Connection[Any],
    day: dt.date,
    searches: int,
    units: int,
    playlist_units: int = 0,
) -> bool:
    """Raise ``day``'s saved counters to ``searches``, ``units`` and ``playlist_units``
    where they are higher.

    Returns:
        Whether the row was created or grew.

    Raises:
        ValueError: Negative counts.
    """
    if min(searches, units, playlist_units) < 0:
        raise ValueError(f"negative usage: {searches}, {units}, {playlist_units}")
    params = {"day": day, "searches": searches, "units": units, "playlist_units": playlist_units}
    return conn.execute(SAVE_QUOTA_DAY, params).rowcount == 1


SELECT_QUOTA_DAY = """
SELECT day, searches, units, updated_at, playlist_units FROM quota_days WHERE day = %s
"""


def select_quota_day(conn: psycopg.Connection[Any], day: dt.date) -> QuotaDayRow | None:
    """``day``'s saved usage, or None when nothing was saved for it."""
    with conn.cursor(row_factory=class_row(QuotaDayRow)) as cur:
        return cur.execute(SELECT_QUOTA_DAY, (day,)).fetchone()


SELECT_QUOTA_DAYS = """
SELECT day, searches, units, updated_at, playlist_units
FROM quota_days ORDER BY day DESC LIMIT %s
"""


def select_quota_days(conn: psycopg.Connection[Any], limit: int = 30) -> list[QuotaDayRow]:
    """The latest ``limit`` days' saved usage, newest first.

    Raises:
        ValueError: ``limit`` below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    with conn.cursor(row_factory=class_row(QuotaDayRow)) as cur:
        return cur.execute(SELECT_QUOTA_DAYS, (limit,)).fetchall()
