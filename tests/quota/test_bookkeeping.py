"""The quota job's logic (tasks.quota) under trio's MockClock, with in-memory stores."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Mapping
from functools import partial

import pytest
import trio
import trio.testing

from smartpip.suggest.quota import pacific_day
from store.errors import DatabaseUnavailable
from store.quota import SEARCH_UNITS, QuotaUsage
from supervisors import (
    Every,
    JobRun,
    JobSpec,
    MemoryClaims,
    Outcome,
    RunRecord,
    StatusRegistry,
    run_job,
    run_period,
)
from tasks.catalogue import JOBS
from tasks.quota import persist_quota, previous_day, restore_day
from tests.quota.memory import MemoryCounters, MemorySaves

TODAY = "2026-03-08"
YESTERDAY = "2026-03-07"


def usage(searches: int) -> QuotaUsage:
    return QuotaUsage(searches=searches, units=searches * SEARCH_UNITS)


def test_previous_day_crosses_months_and_years() -> None:
    assert previous_day("2026-03-01") == "2026-02-28"
    assert previous_day("2024-03-01") == "2024-02-29"
    assert previous_day("2026-01-01") == "2025-12-31"


async def test_persist_saves_yesterday_and_today_then_writes_nothing_new() -> None:
    counters, saves = MemoryCounters(), MemorySaves()
    counters.spend(YESTERDAY, 9, 909)
    counters.spend(TODAY, 2, 202)
    summary = await persist_quota(TODAY, counters, saves)
    assert summary == {
        "day": TODAY,
        "searches": 2,
        "units": 202,
        "restored": False,
        "saved": [YESTERDAY, TODAY],
    }
    assert saves.rows == {YESTERDAY: usage(9), TODAY: usage(2)}
    # Idempotent: nothing grew, nothing is written.
    assert (await persist_quota(TODAY, counters, saves))["saved"] == []
    assert saves.writes == 2
    # Only what grew is written.
    counters.spend(TODAY, 1, 100)
    assert (await persist_quota(TODAY, counters, saves))["saved"] == [TODAY]
    assert saves.rows[TODAY] == QuotaUsage(3, 302)


async def test_a_day_without_usage_is_not_saved() -> None:
    counters, saves = MemoryCounters(), MemorySaves()
    summary = await persist_quota(TODAY, counters, saves)
    assert (summary["searches"], summary["saved"]) == (0, [])
    assert saves.rows == {}
    assert counters.days == {}  # nothing to restore: no key created either


async def test_persist_restores_a_flushed_counter_and_never_lowers_one() -> None:
    counters, saves = MemoryCounters(), MemorySaves()
    counters.spend(TODAY, 5, 505)
    await persist_quota(TODAY, counters, saves)
    counters.flush()
    counters.spend(TODAY, 1, 100)  # counted on the empty counter before the job ran
    summary = await persist_quota(TODAY, counters, saves)
    assert (summary["restored"], summary["searches"], summary["units"]) == (True, 5, 505)
    assert counters.days[TODAY] == usage(5)
    # Yesterday is never restored (nothing spends on it), only saved.
    assert YESTERDAY not in counters.days
    # Redis ahead of Postgres: nothing restored, the save grows.
    counters.spend(TODAY, 2, 202)
    summary = await persist_quota(TODAY, counters, saves)
    assert (summary["restored"], summary["saved"]) == (False, [TODAY])
    assert saves.rows[TODAY] == usage(7) == counters.days[TODAY]
    # One counter behind (units lost, searches not): raised, the other kept.
    counters.days[TODAY] = QuotaUsage(searches=8, units=10)
    summary = await persist_quota(TODAY, counters, saves)
    assert summary["restored"] is True
    assert counters.days[TODAY] == QuotaUsage(searches=8, units=707)
    assert saves.rows[TODAY] == QuotaUsage(searches=8, units=707)


async def test_restore_day_puts_the_saved_usage_back() -> None:
    counters, saves = MemoryCounters(), MemorySaves()
    assert await restore_day(TODAY, counters, saves) is None
    assert counters.days == {}  # nothing saved: Redis left as it was
    saves.rows[TODAY] = usage(4)
    counters.spend(TODAY, 6, 606)
    assert await restore_day(TODAY, counters, saves) == usage(6)  # never lowered
    counters.flush()
    assert await restore_day(TODAY, counters, saves) == usage(4)
    assert counters.days[TODAY] == usage(4)


async def test_postgres_down_fails_the_run_and_leaves_redis_alone() -> None:
    counters, saves = MemoryCounters(), MemorySaves(down=True)
    counters.spend(TODAY, 3, 303)
    with pytest.raises(DatabaseUnavailable):
        await persist_quota(TODAY, counters, saves)
    with pytest.raises(DatabaseUnavailable):
        await restore_day(TODAY, counters, saves)
    assert counters.days == {TODAY: usage(3)}


async def test_a_store_outage_fails_the_run_with_a_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """As the job is wired (``quiet_errors``): failed, counted, no ERROR and no traceback."""
    del autojump_clock
    counters, saves = MemoryCounters(), MemorySaves(down=True)

    async def body(run: JobRun) -> Mapping[str, object]:
        return await persist_quota(TODAY, counters, saves)

    job = JobSpec(
        "quota",
        Every(60),
        body,
        MemoryClaims(clock=wall),
        deadline=30.0,
        quiet_errors=(DatabaseUnavailable,),
    )
    with caplog.at_level(logging.INFO, logger="supervisors"):
        record = await run_period(job, holder="a", clock=wall)
    assert record.outcome is Outcome.FAILED
    assert record.error is not None and "postgres is down" in record.error
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, r.exc_info) for r in warned] == [(logging.WARNING, None)]
    assert "job quota failed in" in warned[0].getMessage()


def test_the_quota_job_is_in_the_catalogue() -> None:
    quota = JOBS["quota"]
    assert (quota.kind, quota.schedule.describe()) == ("claim", Every(60).describe())
    assert quota.deadline < 60  # a stuck run ends before the next period starts


# 2026-03-07 23:57 PST: the job crosses midnight Pacific (into the spring-forward day).
START = dt.datetime(2026, 3, 8, 7, 57, tzinfo=dt.UTC)
SPEND_EVERY = 20.0
FLUSH_AT = 270.0  # 00:01:30 PST: Redis is lost before the next reservation (at 285 s)
STOP_AT = 370.0


def wall() -> dt.datetime:
    return START + dt.timedelta(seconds=trio.current_time())


async def test_two_replicas_persist_once_a_minute_across_midnight_and_a_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The job on two replicas, a spender reserving like the gate does, Redis flushed once.

    Loses exactly what was counted between the last save and the flush, nothing more; the
    first reservation after the flush restores the counter before counting.
    """
    del autojump_clock
    counters, saves = MemoryCounters(), MemorySaves()
    records: list[RunRecord] = []
    snapshots: list[dict[str, QuotaUsage]] = []
    spent: dict[str, int] = {}

    async def body(run: JobRun) -> Mapping[str, object]:
        summary = await persist_quota(pacific_day(wall()), counters, saves)
        snapshots.append(dict(saves.rows))
        return summary

    async def spender() -> None:
        await trio.sleep(5)
        flushed = False
        while trio.current_time() < STOP_AT:
            if not flushed and trio.current_time() > FLUSH_AT:
                counters.flush()
                flushed = True
            day = pacific_day(wall())
            if day not in counters.days:  # the gate: a missing counter is restored first
                await restore_day(day, counters, saves)
            counters.spend(day, 1, SEARCH_UNITS)
            spent[day] = spent.get(day, 0) + 1
            await trio.sleep(SPEND_EVERY)

    job = JobSpec("quota", Every(60), body, MemoryClaims(clock=wall), deadline=30.0)
    async with trio.open_nursery() as nursery:
        for name in ("a", "b"):
            registry = StatusRegistry()
            registry.register("quota", supervisor=name)
            await nursery.start(
                partial(
                    run_job, job, holder=name, registry=registry, clock=wall, on_run=records.append
                )
            )
        nursery.start_soon(spender)
        await trio.sleep(STOP_AT)
        nursery.cancel_scope.cancel()

    # Each minute ran once, on one replica or the other (periods at 0, 60, ... 360 s).
    succeeded = [r for r in records if r.outcome is Outcome.SUCCEEDED]
    assert [r.period.start for r in succeeded] == [
        START + dt.timedelta(minutes=m) for m in range(7)
    ]
    assert len([r for r in records if r.outcome is Outcome.HELD]) == 7
    # Yesterday's last searches (23:57-23:59:45) were saved by the first run after midnight.
    assert spent[YESTERDAY] == 9
    assert saves.rows[YESTERDAY] == usage(9)
    # Today: spends at 185, 205, ... 365 s. Saved at 240: 3. Flushed after 245 and 265 were
    # counted: those two are lost; the reservation at 285 restored 3 before counting.
    assert spent[TODAY] == 10
    assert counters.days[TODAY] == usage(10 - 2)
    assert saves.rows[TODAY] == usage(7)  # the run at 360 s saw 185..345 minus the two lost
    # The saves only ever grew.
    for before, after in itertools.pairwise(snapshots):
        for day, row in before.items():
            assert after[day].searches >= row.searches and after[day].units >= row.units
