"""Quota bookkeeping on the real stores: saved to Postgres, restored into Redis after a flush."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from smartpip.suggest.quota import QuotaGate, Refusal, Reservation
from store.errors import DatabaseUnavailable
from store.playlist_quota import Verdict, reserve_playlist_units
from store.postgres import Database, PostgresSettings, open_database
from store.quota import QuotaUsage, budget_units, quota_usage, reserve_search
from store.quota_days import save_quota_day, select_quota_day, select_quota_days
from store.redis import RedisStore
from tasks.quota import PostgresSaves, RedisCounters, persist_quota, restore_day
from tests.support.clock import FakeClock

# 2024-03-10 20:00 PDT: the Pacific day is 2024-03-10.
EVENING = dt.datetime(2024, 3, 11, 3, 0, tzinfo=dt.UTC).timestamp()
DAY = "2024-03-10"


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with open_database(PostgresSettings(url=pg_url, max_size=4)) as database:
        yield database


def restoring_gate(store: RedisStore, db: Database, budget: int) -> tuple[QuotaGate, list[str]]:
    """A gate wired as the composition root wires it; the list records each restore."""
    counters, saves = RedisCounters(store), PostgresSaves(db)
    restored: list[str] = []

    async def restore(day: str) -> QuotaUsage | None:
        restored.append(day)
        return await restore_day(day, counters, saves)

    clock = FakeClock(EVENING)
    gate = QuotaGate(store, daily_budget=budget, restore=restore, clock=clock, monotonic=clock)
    return gate, restored


async def test_saves_are_idempotent_and_monotone(db: Database) -> None:
    day = dt.date(2024, 3, 10)
    assert await db.run(select_quota_day, day) is None
    assert await db.run(save_quota_day, day, 3, 303)
    first = await db.run(select_quota_day, day)
    assert first is not None and (first.searches, first.units) == (3, 303)
    # The same save again, or an older one, writes nothing (updated_at unchanged).
    assert not await db.run(save_quota_day, day, 3, 303)
    assert not await db.run(save_quota_day, day, 1, 100)
    assert await db.run(select_quota_day, day) == first
    # Each counter only grows, independently.
    assert await db.run(save_quota_day, day, 2, 400)
    row = await db.run(select_quota_day, day)
    assert row is not None and (row.searches, row.units) == (3, 400)
    assert row.updated_at >= first.updated_at
    with pytest.raises(ValueError, match="negative"):
        await db.run(save_quota_day, day, -1, 0)
    # The history: one row per day, newest first.
    await db.run(save_quota_day, dt.date(2024, 3, 9), 7, 707)
    await db.run(save_quota_day, dt.date(2024, 3, 11), 1, 101)
    history = await db.run(select_quota_days, 2)
    assert [(r.day.isoformat(), r.searches) for r in history] == [
        ("2024-03-11", 1),
        ("2024-03-10", 3),
    ]


async def test_the_quota_counter_survives_a_redis_flush(
    redis_store: RedisStore, db: Database
) -> None:
    counters, saves = RedisCounters(redis_store), PostgresSaves(db)
    for _ in range(3):
        assert (await reserve_search(redis_store, DAY, budget=budget_units(10))).allowed
    summary = await persist_quota(DAY, counters, saves)
    assert summary["saved"] == [DAY]

    await redis_store.delete_prefixed()  # Redis restarted empty
    assert await quota_usage(redis_store, DAY) == QuotaUsage(0, 0)

    summary = await persist_quota(DAY, counters, saves)
    assert (summary["restored"], summary["searches"], summary["units"]) == (True, 3, 300)
    assert await quota_usage(redis_store, DAY) == QuotaUsage(3, 300)
    # Running again finds nothing to restore or save.
    summary = await persist_quota(DAY, counters, saves)
    assert (summary["restored"], summary["saved"]) == (False, [])


async def test_the_playlists_share_survives_a_redis_flush(
    redis_store: RedisStore, db: Database
) -> None:
    """What playlist writes spent is saved and restored with the day: after Redis lost it,
    the share is not handed out again (it was before: only searches and units came back)."""
    counters, saves = RedisCounters(redis_store), PostgresSaves(db)
    user = uuid.uuid4()

    async def write() -> Verdict:
        grant = await reserve_playlist_units(
            redis_store,
            DAY,
            user,
            cost=50,
            day_budget=budget_units(100),
            playlist_budget=100,  # two inserts
            user_limit=10,
            count_user=True,
        )
        return grant.verdict

    assert [await write(), await write()] == [Verdict.ALLOWED, Verdict.ALLOWED]
    await persist_quota(DAY, counters, saves)
    row = await db.run(select_quota_day, dt.date(2024, 3, 10))
    assert row is not None and (row.units, row.playlist_units) == (100, 100)

    await redis_store.delete_prefixed()  # Redis restarted empty
    summary = await persist_quota(DAY, counters, saves)
    assert summary["restored"] is True
    assert await quota_usage(redis_store, DAY) == QuotaUsage(0, 100, playlist_units=100)
    assert await write() == Verdict.SHARE_SPENT


async def test_a_reservation_after_a_flush_cannot_exceed_the_budget(
    redis_store: RedisStore, db: Database
) -> None:
    gate, restored = restoring_gate(redis_store, db, budget=4)
    results = [await gate.reserve() for _ in range(3)]
    assert [r.searches for r in results if isinstance(r, Reservation)] == [1, 2, 3]
    assert restored == [DAY]  # the day's first reservation found no counter: nothing saved
    await persist_quota(DAY, RedisCounters(redis_store), PostgresSaves(db))

    await redis_store.delete_prefixed()  # counter and breaker gone

    # The first reservation restores the saved 3 before counting: one search is left.
    after = await gate.reserve()
    assert isinstance(after, Reservation) and (after.searches, after.remaining) == (4, 0)
    assert restored == [DAY, DAY]
    refused = await gate.reserve()
    assert isinstance(refused, Refusal) and refused.reason == "quota"
    assert await quota_usage(redis_store, DAY) == QuotaUsage(4, 400)
    assert restored == [DAY, DAY]  # the counter exists again: no more restores


async def test_units_of_a_search_in_flight_across_a_flush_land_on_the_restored_counter(
    redis_store: RedisStore, db: Database
) -> None:
    gate, restored = restoring_gate(redis_store, db, budget=4)
    assert isinstance(await gate.reserve(), Reservation)
    await gate.add_units(1)
    await persist_quota(DAY, RedisCounters(redis_store), PostgresSaves(db))
    assert isinstance(await gate.reserve(), Reservation)  # searching when Redis restarts
    await redis_store.delete_prefixed()
    await gate.add_units(1)  # its videos.list: restores the saved day, then counts
    assert restored == [DAY, DAY]
    assert await quota_usage(redis_store, DAY) == QuotaUsage(1, 102)
    # The counter exists: the next reservation counts on it without another restore.
    after = await gate.reserve()
    assert isinstance(after, Reservation) and after.searches == 2
    assert restored == [DAY, DAY]


async def test_a_missing_counter_while_postgres_is_down_counts_and_the_job_repairs_it(
    redis_store: RedisStore, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await db.run(save_quota_day, dt.date.fromisoformat(DAY), 5, 505)

    async def postgres_down(day: str) -> None:
        raise DatabaseUnavailable("postgres is down (test)")

    clock = FakeClock(EVENING)
    gate = QuotaGate(
        redis_store, daily_budget=6, restore=postgres_down, clock=clock, monotonic=clock
    )
    with caplog.at_level(logging.WARNING):
        first = await gate.reserve()
    assert isinstance(first, Reservation) and first.searches == 1
    assert "Postgres cannot restore" in caplog.text
    # The job (Postgres back) raises the counter to the saved usage, keeping nothing lower.
    summary = await persist_quota(DAY, RedisCounters(redis_store), PostgresSaves(db))
    assert (summary["restored"], summary["searches"]) == (True, 5)
    last = await gate.reserve()
    assert isinstance(last, Reservation) and (last.searches, last.remaining) == (6, 0)
    assert isinstance(await gate.reserve(), Refusal)
