"""Tests for run_periodic and periodic_child."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import trio
import trio.testing

from supervisors import (
    Backoff,
    periodic_child,
    run_periodic,
    run_supervisor,
)

from .helpers import WALL_EPOCH, Boom, make_registry


class Job:
    """A job that takes ``duration`` seconds and records when and how concurrently it ran."""

    def __init__(self, duration: float, runs_wanted: int, fail_on: frozenset[int] = frozenset()):
        self.duration = duration
        self.runs_wanted = runs_wanted
        self.fail_on = fail_on
        self.starts: list[float] = []
        self.running = 0
        self.max_running = 0
        self.done = trio.Event()

    async def __call__(self) -> None:
        self.starts.append(trio.current_time())
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await trio.sleep(self.duration)
            if len(self.starts) in self.fail_on:
                raise Boom(f"run {len(self.starts)}")
        finally:
            self.running -= 1
            if len(self.starts) == self.runs_wanted:
                self.done.set()


async def run_until_done(job: Job, **kwargs: Any) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda *, task_status: run_periodic(job, task_status=task_status, **kwargs)
        )
        await job.done.wait()
        nursery.cancel_scope.cancel()


async def test_runs_at_the_interval_from_the_end_of_the_previous_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    job = Job(duration=0.5, runs_wanted=4)
    await run_until_done(job, interval=10.0, jitter=0.0, name="job")
    assert job.starts == [0.0, 10.5, 21.0, 31.5]


async def test_initial_delay(autojump_clock: trio.testing.MockClock) -> None:
    job = Job(duration=0.0, runs_wanted=2)
    await run_until_done(job, interval=10.0, jitter=0.0, name="job", initial_delay=3.0)
    assert job.starts == [3.0, 13.0]


async def test_slow_job_never_overlaps_and_jitter_stays_in_bounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    job = Job(duration=15.0, runs_wanted=50)
    await run_until_done(job, interval=10.0, jitter=0.2, name="job", rng=random.Random(7))

    assert job.max_running == 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(job.starts)]
    assert all(15.0 + 8.0 <= gap <= 15.0 + 12.0 for gap in gaps)
    assert len(set(gaps)) > 1  # really jittered


async def test_registry_is_updated_between_runs(autojump_clock: trio.testing.MockClock) -> None:
    registry = make_registry()
    registry.register("job", "standalone")
    job = Job(duration=2.0, runs_wanted=99)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda *, task_status: run_periodic(
                job,
                interval=10.0,
                jitter=0.0,
                name="job",
                registry=registry,
                task_status=task_status,
            )
        )
        await trio.testing.wait_all_tasks_blocked()  # first run in progress
        during = registry.snapshot()["job"]
        assert during["state"] == "running"
        assert during["next_run_at"] is None
        assert during["last_success_at"] is None

        await trio.sleep(2.5)  # the first run ended at 2.0
        after = registry.get("job")
        assert after.last_success_at == WALL_EPOCH + 2.0
        assert after.next_run_at == WALL_EPOCH + 12.0
        nursery.cancel_scope.cancel()


async def test_failed_job_is_restarted_by_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    failures: list[tuple[str, BaseException | None]] = []
    job = Job(duration=1.0, runs_wanted=4, fail_on=frozenset({2}))
    child = periodic_child(
        "refresh",
        job,
        interval=10.0,
        jitter=0.0,
        registry=registry,
        backoff=Backoff(minimum=3.0, jitter=0.0),
    )

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda *, task_status: run_supervisor(
                "jobs",
                [child],
                registry,
                on_restart=lambda name, exc: failures.append((name, exc)),
                task_status=task_status,
            )
        )
        await job.done.wait()
        nursery.cancel_scope.cancel()

    # run 2 fails at 12; backoff 3 s; the restarted loop runs at once at 15, then at 26.
    assert job.starts == [0.0, 11.0, 15.0, 26.0]
    assert job.max_running == 1
    ((name, exc),) = failures
    assert name == "refresh"
    assert isinstance(exc, Boom)
    status = registry.get("refresh")
    assert status.restarts == 1
    assert status.last_error == "Boom: run 2"
    assert status.last_error_at == WALL_EPOCH + 12.0
    assert status.last_success_at == WALL_EPOCH + 27.0  # end of run 4


async def test_an_interval_callable_sets_the_pace_after_each_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    job = Job(duration=1.0, runs_wanted=4)
    paces = iter([10.0, 2.0, 5.0])
    await run_until_done(job, interval=lambda: next(paces, 99.0), jitter=0.0, name="job")
    assert job.starts == [0.0, 11.0, 14.0, 20.0]


async def test_wake_starts_the_next_run_early(autojump_clock: trio.testing.MockClock) -> None:
    job = Job(duration=1.0, runs_wanted=3)
    wanted = trio.Event()

    async def wake() -> None:
        nonlocal wanted
        await wanted.wait()
        wanted = trio.Event()  # one early run per request

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda *, task_status: run_periodic(
                job, interval=100.0, jitter=0.0, name="job", wake=wake, task_status=task_status
            )
        )
        await trio.sleep(5.0)
        wanted.set()
        await job.done.wait()
        nursery.cancel_scope.cancel()
    assert job.starts == [0.0, 5.0, 106.0]


async def test_an_interval_callable_returning_zero_is_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    paces = iter([1.0, 0.0])
    job = Job(duration=0.0, runs_wanted=99)
    with pytest.raises(ValueError, match="interval"):
        await run_periodic(job, interval=lambda: next(paces), jitter=0.0, name="job")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0.0}, "interval"),
        ({"interval": 1.0, "jitter": 1.0}, "jitter"),
        ({"interval": 1.0, "initial_delay": -1.0}, "initial_delay"),
    ],
)
async def test_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    job = Job(duration=0.0, runs_wanted=1)
    with pytest.raises(ValueError, match=match):
        await run_periodic(job, name="job", **kwargs)
