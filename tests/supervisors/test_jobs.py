"""Scheduled jobs under trio's MockClock, with the in-memory claims and leases.

Several ``run_job`` loops sharing one store stand for replicas sharing Redis or Postgres.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from supervisors import (
    Acquired,
    Daily,
    Every,
    FencedOut,
    Held,
    JobRun,
    JobSpec,
    MemoryClaims,
    MemoryLeases,
    Outcome,
    Period,
    RunRecord,
    StatusRegistry,
    job_child,
    run_job,
    run_supervisor,
)

from .helpers import make_registry

# The jobs' wall clock starts on a period boundary of every schedule used here.
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def wall() -> dt.datetime:
    """The wall clock, following trio's mock clock from ``WALL_EPOCH``."""
    return START + dt.timedelta(seconds=trio.current_time())


Body = Callable[[JobRun], Awaitable[Mapping[str, object] | None]]


class Recorder:
    """Collects run records and every body call (who ran which period, from when to when)."""

    def __init__(self) -> None:
        self.records: list[RunRecord] = []
        self.calls: list[tuple[str, str, float, float]] = []  # holder, period, start, end
        self.active = 0
        self.most_active = 0

    def body(self, seconds: float = 1.0, fail: bool = False) -> Body:
        async def run(run: JobRun) -> Mapping[str, object]:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            started = trio.current_time()
            try:
                await trio.sleep(seconds)
                if fail:
                    raise RuntimeError("the job broke")
                return {"period": run.period.key}
            finally:
                self.active -= 1
                self.calls.append((run.holder, run.period.key, started, trio.current_time()))

        return run

    def outcomes(self, outcome: Outcome) -> list[RunRecord]:
        return [r for r in self.records if r.outcome is outcome]


def spec(body: Body, claims: MemoryClaims | MemoryLeases, **kwargs: object) -> JobSpec:
    values: dict[str, object] = {"schedule": Every(60), "deadline": 30.0, "retry_after": 10.0}
    values.update(kwargs)
    return JobSpec("job", body=body, claims=claims, **values)  # type: ignore[arg-type]


async def start_replicas(
    nursery: trio.Nursery, job: JobSpec, recorder: Recorder, names: tuple[str, ...]
) -> list[StatusRegistry]:
    registries = []
    for name in names:
        registry = make_registry()
        registry.register(job.name, supervisor=name)
        await nursery.start(
            partial(
                run_job,
                job,
                holder=name,
                registry=registry,
                clock=wall,
                on_run=recorder.records.append,
            )
        )
        registries.append(registry)
    return registries


# -- periods ---------------------------------------------------------------------------------


def test_every_aligns_to_the_epoch_whatever_the_start() -> None:
    period = Every(600).period_at(dt.datetime(2026, 3, 1, 10, 17, 5, tzinfo=dt.UTC))
    assert period.start == dt.datetime(2026, 3, 1, 10, 10, tzinfo=dt.UTC)
    assert period.end == dt.datetime(2026, 3, 1, 10, 20, tzinfo=dt.UTC)
    assert period.key == "2026-03-01T10:10:00Z"
    later = Every(600).period_at(period.end)
    assert later.start == period.end  # the end belongs to the next period


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Every(60).period_at(dt.datetime(2026, 1, 1))


PACIFIC = ZoneInfo("America/Los_Angeles")


def test_daily_periods_follow_the_local_wall_time_across_dst() -> None:
    after_midnight = Daily(dt.time(0, 5), PACIFIC)
    # 2026-03-08: clocks spring forward; 2026-11-01: they fall back.
    spring = after_midnight.period_at(dt.datetime(2026, 3, 8, 12, tzinfo=PACIFIC))
    assert spring.seconds == 23 * 3600
    autumn = after_midnight.period_at(dt.datetime(2026, 11, 1, 12, tzinfo=PACIFIC))
    assert autumn.seconds == 25 * 3600
    just_before = after_midnight.period_at(dt.datetime(2026, 3, 10, 0, 4, tzinfo=PACIFIC))
    assert just_before.start == dt.datetime(2026, 3, 9, 0, 5, tzinfo=PACIFIC)
    assert after_midnight.describe() == "daily 00:05 America/Los_Angeles"


def test_daily_periods_tile_time_without_gaps_for_a_year() -> None:
    for schedule in (Daily(dt.time(3, 30)), Daily(dt.time(2, 30), PACIFIC)):
        # 02:30 Pacific does not exist on 2026-03-08; every replica reads it the same way.
        period = schedule.period_at(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        for _ in range(366):
            later = schedule.period_at(period.end)
            assert later.start == period.end
            assert schedule.period_at(period.end - dt.timedelta(microseconds=1)) == period
            assert 23 * 3600 <= period.seconds <= 25 * 3600
            period = later


# -- once per period across replicas ---------------------------------------------------------


async def test_two_replicas_over_twenty_periods_run_each_once_never_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    claims = MemoryClaims(clock=wall)
    job = spec(recorder.body(seconds=5), claims)
    async with trio.open_nursery() as nursery:
        await start_replicas(nursery, job, recorder, ("a", "b"))
        await trio.sleep(20 * 60 - 1)
        nursery.cancel_scope.cancel()
    periods = [period for _holder, period, _start, _end in recorder.calls]
    assert len(periods) == len(set(periods)) == 20
    assert recorder.most_active == 1
    # Every period that ran was skipped by exactly the other replica.
    assert len(recorder.outcomes(Outcome.HELD)) == len(periods)


async def test_a_run_slower_than_its_period_never_overlaps_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    job = spec(recorder.body(seconds=150), MemoryClaims(clock=wall), deadline=200.0)
    async with trio.open_nursery() as nursery:
        await start_replicas(nursery, job, recorder, ("a",))
        await trio.sleep(600)
        nursery.cancel_scope.cancel()
    assert recorder.most_active == 1
    ends = [end for *_rest, end in recorder.calls]
    starts = [start for *_rest, start, _end in recorder.calls]
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False))


async def test_the_deadline_cancels_a_run_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    job = spec(recorder.body(seconds=50), MemoryClaims(clock=wall), deadline=20.0)
    async with trio.open_nursery() as nursery:
        registries = await start_replicas(nursery, job, recorder, ("a",))
        await trio.sleep(59)
        nursery.cancel_scope.cancel()
    (record,) = recorder.records
    assert record.outcome is Outcome.TIMEOUT
    assert record.seconds == pytest.approx(20.0)
    status = registries[0].snapshot()["job"]
    assert isinstance(status["job"], dict)
    assert status["job"]["last_outcome"] == "timeout"
    assert "deadline" in str(status["last_error"])


async def test_a_failed_claimed_run_waits_for_the_next_period(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    job = spec(recorder.body(fail=True), MemoryClaims(clock=wall))
    async with trio.open_nursery() as nursery:
        await start_replicas(nursery, job, recorder, ("a", "b"))
        await trio.sleep(119)
        nursery.cancel_scope.cancel()
    caplog.clear()  # the failures are logged at ERROR, on purpose
    failed = recorder.outcomes(Outcome.FAILED)
    assert len(failed) == 2  # one per period, not retried inside it
    assert len({r.period for r in failed}) == 2


async def test_the_claims_store_being_down_is_retried_within_the_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()

    class FlakyClaims(MemoryClaims):
        failures = 2

        async def acquire(self, job: str, period: Period, holder: str) -> Acquired | Held:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("store down")
            return await super().acquire(job, period, holder)

    claims = FlakyClaims(clock=wall)
    job = spec(recorder.body(), claims)
    async with trio.open_nursery() as nursery:
        await start_replicas(nursery, job, recorder, ("a",))
        await trio.sleep(59)
        nursery.cancel_scope.cancel()
    assert [r.outcome for r in recorder.records] == [
        Outcome.UNCLAIMED,
        Outcome.UNCLAIMED,
        Outcome.SUCCEEDED,
    ]
    assert len(recorder.calls) == 1 and recorder.calls[0][2] == pytest.approx(20.0)


async def test_a_paused_job_claims_nothing(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder()
    claims = MemoryClaims(clock=wall)
    job = spec(recorder.body(), claims, paused=True)
    async with trio.open_nursery() as nursery:
        registries = await start_replicas(nursery, job, recorder, ("a",))
        await trio.sleep(300)
        nursery.cancel_scope.cancel()
    assert recorder.calls == [] and claims._claims == {}
    assert {r.outcome for r in recorder.records} == {Outcome.PAUSED}
    status = registries[0].snapshot()["job"]["job"]
    assert isinstance(status, dict) and status["paused"] is True


async def test_the_loop_is_restarted_by_its_supervisor_after_a_crash(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    claims = MemoryClaims(clock=wall)

    class CrashingOnce:
        crashes = 1

        def period_at(self, moment: dt.datetime) -> Period:
            if self.crashes:
                self.crashes -= 1
                raise RuntimeError("a bug in the loop")
            return Every(60).period_at(moment)

        def describe(self) -> str:
            return "every 60s, crashing once"

    schedule = CrashingOnce()
    job = spec(recorder.body(), claims, schedule=schedule)
    registry = make_registry()
    child = job_child(
        job, holder="a", registry=registry, clock=wall, on_run=recorder.records.append
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(run_supervisor, "jobs", [child], registry)
        await trio.sleep(59)
        nursery.cancel_scope.cancel()
    caplog.clear()
    assert registry.get("job").restarts == 1
    assert [r.outcome for r in recorder.records] == [Outcome.SUCCEEDED]


# -- leases: renewal, loss, takeover, fencing -------------------------------------------------


async def test_a_lease_is_renewed_while_a_long_run_lasts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    leases = MemoryLeases(clock=wall, lease=dt.timedelta(seconds=30))
    job = spec(recorder.body(seconds=200), leases, schedule=Every(3600), deadline=600.0)
    async with trio.open_nursery() as nursery:
        await start_replicas(nursery, job, recorder, ("a", "b"))
        await trio.sleep(300)
        nursery.cancel_scope.cancel()
    assert [(holder, end - start) for holder, _p, start, end in recorder.calls] == [("a", 200.0)]
    assert recorder.outcomes(Outcome.SUCCEEDED)[0].fence == 1


async def test_a_holder_that_dies_is_taken_over_after_its_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    leases = MemoryLeases(clock=wall, lease=dt.timedelta(seconds=30))
    job = spec(recorder.body(seconds=100), leases, schedule=Every(3600), deadline=600.0)
    async with trio.open_nursery() as outer:
        with trio.CancelScope() as replica_a:
            async with trio.open_nursery() as a_nursery:
                await start_replicas(a_nursery, job, recorder, ("a",))
                await trio.sleep(10)
                replica_a.cancel()  # "kill -9": no finish, the lease stays until it lapses
        await start_replicas(outer, job, recorder, ("b",))
        await trio.sleep(200)
        outer.cancel_scope.cancel()
    (run,) = [c for c in recorder.calls if c[0] == "b"]
    # b took over once a's lease (30 s from its start at 0) had lapsed, not before.
    assert run[2] >= 30.0
    assert recorder.outcomes(Outcome.SUCCEEDED)[0].fence == 2


async def test_a_lost_lease_cancels_the_run_and_its_late_write_is_fenced_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leases = MemoryLeases(clock=wall, lease=dt.timedelta(seconds=30))
    records: list[RunRecord] = []
    cancelled_at: list[float] = []
    took_over, reported = trio.Event(), trio.Event()

    def on_run(record: RunRecord) -> None:
        records.append(record)
        reported.set()

    async def body(run: JobRun) -> Mapping[str, object]:
        leases.write(run.job, run.period, run.fence, f"{run.holder} started")
        try:
            await took_over.wait()
            await trio.sleep(100)
        except trio.Cancelled:
            cancelled_at.append(trio.current_time())
            raise
        return {}

    job = spec(body, leases, schedule=Every(3600), deadline=600.0)
    period = Every(3600).period_at(wall())
    registry = make_registry()
    registry.register(job.name, supervisor="a")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(run_job, job, holder="a", registry=registry, clock=wall, on_run=on_run)
        )
        await trio.sleep(1)
        # A newer holder takes the period over (as after a partition or a long pause of "a").
        state = leases.state("job", period)
        assert state == ("running", 1)
        leases._rows[("job", period.start)].until = wall()  # a's lease lapses on the store
        taken = await leases.acquire("job", period, "b")
        assert isinstance(taken, Acquired) and taken.fence == 2
        took_over.set()
        await reported.wait()
        nursery.cancel_scope.cancel()
    # a noticed at its next renewal (every 10 s) and was cancelled within one period.
    assert cancelled_at and cancelled_at[0] <= 1 + 10 + 1e-9
    assert [r.outcome for r in records][:1] == [Outcome.LOST]
    # Its late write is refused; b's is accepted.
    with pytest.raises(FencedOut):
        leases.write("job", period, 1, "a finished")
    leases.write("job", period, 2, "b finished")
    assert [value for *_key, value in leases.writes] == ["a started", "b finished"]
    assert [value for *_key, value in leases.refused] == ["a finished"]


async def test_a_failed_lease_run_is_retried_within_its_period(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    leases = MemoryLeases(clock=wall)
    attempts = 0
    inner = recorder.body(seconds=1)

    async def flaky(run: JobRun) -> Mapping[str, object] | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("first attempt fails")
        return await inner(run)

    job = spec(flaky, leases, schedule=Every(3600), retry_after=60.0)
    async with trio.open_nursery() as nursery:
        await start_replicas(nursery, job, recorder, ("a", "b"))
        await trio.sleep(300)
        nursery.cancel_scope.cancel()
    caplog.clear()
    assert [r.outcome for r in recorder.records if r.outcome is not Outcome.HELD] == [
        Outcome.FAILED,
        Outcome.SUCCEEDED,
    ]
    assert attempts == 2
    assert leases.state("job", Every(3600).period_at(wall())) == ("succeeded", 2)


async def test_the_status_says_who_holds_the_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    leases = MemoryLeases(clock=wall)
    job = spec(recorder.body(seconds=5), leases, schedule=Every(3600))
    async with trio.open_nursery() as nursery:
        a, b = await start_replicas(nursery, job, recorder, ("a", "b"))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    mine, theirs = a.snapshot()["job"]["job"], b.snapshot()["job"]["job"]
    assert isinstance(mine, dict) and isinstance(theirs, dict)
    assert (mine["holder"], mine["holder_is_self"], mine["fence"]) == ("a", True, 1)
    assert (theirs["holder"], theirs["holder_is_self"], theirs["fence"]) == ("a", False, 1)
    assert mine["last_outcome"] == "succeeded" and mine["kind"] == "lease"
    assert theirs["last_outcome"] is None
    assert b.snapshot()["job"]["next_run_at"] is not None
