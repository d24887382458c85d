"""Scheduled jobs: each runs once per period across replicas, never overlapping itself.

A job is a plain coroutine (``body(run) -> summary``) plus a :class:`~._schedule.Schedule`
and a :class:`Claims` store that decides which replica runs a period. :func:`run_job` is its
supervised child, one per job per process::

    forever:
      period = the period containing now
      if this period is done here (run, or held elsewhere): sleep until it ends
      claim the period
        held by another replica -> note who; if its lease may lapse, try again when it does
        acquired -> run the body under the job's deadline (and, for a lease, renew it
                    meanwhile; losing it cancels the body), then report the outcome
      a run that did not succeed is retried after ``retry_after`` while the period lasts,
      if the claims store hands the period out again (leases do; claims never do)

Two kinds of claims (implemented over Redis and Postgres in ``tasks.claims``, in memory in
:mod:`._memory` for tests):

- **claim** (cheap, idempotent jobs): "this period is mine", a marker keyed by job and period
  start that is never released and expires after the period; a replica arriving later finds
  it and skips. A failed run is not retried within its period: the next period runs anyway.
- **lease** (jobs that must complete): a row per (job, period) with a lease on the store's
  clock, renewed while the body runs, taken over once it lapses, and a fencing token (a
  number that only grows) that every write of the job checks, so a paused or partitioned old
  holder can never write after a newer holder took over. A failed run releases the period.

Concurrency: one task per job per process, so a job never overlaps itself here; across
replicas the claims store is the only arbiter. Every wait is measured on the injected wall
clock, so the whole loop runs under trio's MockClock in tests.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, Protocol

import attrs
import trio

from ._policy import Backoff, RestartBudget, RestartPolicy
from ._schedule import Period, Schedule
from ._spec import ChildSpec
from ._status import ChildState, JobStatus, StatusRegistry, describe_error

__all__ = [
    "Acquired",
    "Claims",
    "Held",
    "JobBody",
    "JobRun",
    "JobSpec",
    "Outcome",
    "RunRecord",
    "job_child",
    "run_job",
    "run_period",
]

logger = logging.getLogger(__name__)

WallClock = Callable[[], dt.datetime]
# Why a third: two renewals can fail (a dependency blip) before the lease lapses.
RENEWALS_PER_LEASE = 3
# Why 30 s: recording a run's end is one statement; a store slower than this is down, and
# the lease then lapses by itself.
FINISH_TIMEOUT = 30.0


def utc_now() -> dt.datetime:
    """The wall clock jobs use by default: now, aware, UTC."""
    return dt.datetime.fromtimestamp(time.time(), dt.UTC)


@attrs.frozen
class Acquired:
    """This replica holds the period.

    Attributes:
        fence: the lease's fencing token (None for a claim).
        lease_seconds: how long the lease lasts without renewal (None for a claim).
    """

    fence: int | None = None
    lease_seconds: float | None = None


@attrs.frozen
class Held:
    """Another replica holds the period, or it is done.

    Attributes:
        holder: who holds it (None when unknown).
        retry_at: when its lease may lapse and a takeover be attempted (None: never within
            this period; the period is done as far as this replica is concerned).
        fence: the holder's fencing token, when the store knows it.
    """

    holder: str | None = None
    retry_at: dt.datetime | None = None
    fence: int | None = None


class Claims(Protocol):
    """Which replica runs a period: a claim or a lease store (see the module docstring)."""

    @property
    def kind(self) -> str:
        """``claim`` or ``lease``."""
        ...

    async def acquire(self, job: str, period: Period, holder: str) -> Acquired | Held:
        """Take the period for ``holder``, or say who has it."""
        ...

    async def renew(self, job: str, period: Period, fence: int) -> bool:
        """Extend the lease; False when another holder took over (fenced out)."""
        ...

    async def finish(
        self, job: str, period: Period, fence: int | None, *, succeeded: bool, summary: str
    ) -> bool:
        """Record the run's end; False when fenced out (a newer holder took over)."""
        ...


@attrs.frozen
class JobRun:
    """What a job body is told about the run it makes.

    Attributes:
        job: the job's name.
        period: the period being run.
        holder: this replica's name.
        fence: the lease's fencing token, for every write the job makes (None for a claim).
    """

    job: str
    period: Period
    holder: str
    fence: int | None = None


JobBody = Callable[[JobRun], Awaitable[Mapping[str, object] | None]]


@attrs.frozen
class JobSpec:
    """One scheduled job.

    Attributes:
        name: unique job name (also its child's name and its claim key).
        schedule: its periods.
        body: the work of one period; returns a small summary for the log (or None).
        claims: which replica runs a period.
        deadline: seconds a run may take before it is cancelled (outcome ``timeout``).
        paused: when true the job claims nothing and runs nothing (``SMARTPIP_JOBS_PAUSED``).
        retry_after: seconds before a run that did not succeed is tried again (if its claims
            store hands the period out again and the period lasts).
        quiet_errors: exception types that mean a dependency is down rather than a bug: a
            run failing with one is still ``failed``, but logged at WARNING without a
            traceback (the dependency's own outage is reported elsewhere, and a replica
            starting its run just as a store goes away is expected).
    """

    name: str
    schedule: Schedule
    body: JobBody
    claims: Claims
    deadline: float
    paused: bool = False
    retry_after: float = 60.0
    quiet_errors: tuple[type[Exception], ...] = ()


class Outcome(enum.Enum):
    """How a run ended. ``held``: another replica had the period; ``unclaimed``: the claims
    store could not be asked; ``lost``: the lease was lost or the run fenced out."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    LOST = "lost"
    HELD = "held"
    UNCLAIMED = "unclaimed"
    PAUSED = "paused"


@attrs.frozen
class RunRecord:
    """One run (or non-run) of a period, for metrics and logs."""

    job: str
    period: Period
    outcome: Outcome
    seconds: float = 0.0
    holder: str | None = None
    fence: int | None = None
    error: str | None = None


RunCallback = Callable[[RunRecord], None]


def _wait_seconds(target: dt.datetime, clock: WallClock) -> float:
    return max(0.0, (target - clock()).total_seconds())


async def run_job(
    spec: JobSpec,
    *,
    holder: str,
    registry: StatusRegistry,
    clock: WallClock = utc_now,
    on_run: RunCallback | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run ``spec`` once per period, forever (a supervised child; see the module docstring).

    Args:
        spec: the job.
        holder: this replica's name, written into claims and leases.
        registry: where the job's status is kept (it must already be registered).
        clock: the wall clock (aware UTC); tests pass one that follows trio's MockClock.
        on_run: called with every :class:`RunRecord` (metrics).
        task_status: started at once.
    """
    status = registry.get(spec.name)
    status.job = JobStatus(
        schedule=spec.schedule.describe(), kind=spec.claims.kind, paused=spec.paused
    )
    registry.set_state(spec.name, ChildState.RUNNING)
    task_status.started()
    report = on_run or (lambda _record: None)
    done: dt.datetime | None = None
    while True:
        period = spec.schedule.period_at(clock())
        status.job.period = period.key
        if done == period.start:
            registry.set_next_run(spec.name, _wait_seconds(period.end, clock))
            await trio.sleep(_wait_seconds(period.end, clock))
            continue
        if spec.paused:
            report(RunRecord(spec.name, period, Outcome.PAUSED))
            done = period.start
            continue
        retry = await _one_attempt(spec, period, holder, registry, clock, report)
        if retry is None:
            done = period.start
            continue
        wait_until = min(retry, period.end)
        registry.set_next_run(spec.name, _wait_seconds(wait_until, clock))
        await trio.sleep(_wait_seconds(wait_until, clock))


async def _one_attempt(
    spec: JobSpec,
    period: Period,
    holder: str,
    registry: StatusRegistry,
    clock: WallClock,
    report: RunCallback,
) -> dt.datetime | None:
    """Claim and maybe run ``period``; the time to try again, or None when it is done here."""
    status = registry.get(spec.name)
    assert status.job is not None
    try:
        claimed = await spec.claims.acquire(spec.name, period, holder)
    except Exception as error:  # the claims store is unavailable: try again later
        cause = describe_error(error)
        logger.warning("job %s: could not claim %s: %s", spec.name, period.key, cause)
        registry.record_error(spec.name, cause)
        report(RunRecord(spec.name, period, Outcome.UNCLAIMED, error=cause))
        return clock() + dt.timedelta(seconds=spec.retry_after)
    if isinstance(claimed, Held):
        status.job.holder, status.job.holder_is_self = claimed.holder, claimed.holder == holder
        status.job.fence = claimed.fence
        if claimed.retry_at is None:
            if claimed.holder != holder:  # our own claim, after a run that did not succeed
                report(RunRecord(spec.name, period, Outcome.HELD, holder=claimed.holder))
            return None
        return claimed.retry_at
    status.job.holder, status.job.holder_is_self, status.job.fence = holder, True, claimed.fence
    registry.set_next_run(spec.name, None)
    record = await _run(spec, period, holder, claimed, clock)
    status.job.last_run_at = clock().timestamp()
    status.job.last_outcome = record.outcome.value
    status.job.last_seconds = record.seconds
    if record.outcome is Outcome.SUCCEEDED:
        registry.mark_success(spec.name)
    elif record.error is not None:
        registry.record_error(spec.name, record.error)
    report(record)
    if record.outcome is Outcome.SUCCEEDED:
        return None
    return clock() + dt.timedelta(seconds=spec.retry_after)


async def run_period(
    spec: JobSpec, *, holder: str, clock: WallClock = utc_now, period: Period | None = None
) -> RunRecord:
    """Claim one period (the current one by default) and run it now, once: for operators
    (``smartpip jobs run``), through the same claim as the scheduled runs.

    Returns:
        The record: ``held`` (with the holder) when another replica has the period,
        ``unclaimed`` when the claims store could not be asked, else the run's outcome.
    """
    period = spec.schedule.period_at(clock()) if period is None else period
    try:
        claimed = await spec.claims.acquire(spec.name, period, holder)
    except Exception as error:
        return RunRecord(spec.name, period, Outcome.UNCLAIMED, error=describe_error(error))
    if isinstance(claimed, Held):
        return RunRecord(
            spec.name, period, Outcome.HELD, holder=claimed.holder, fence=claimed.fence
        )
    return await _run(spec, period, holder, claimed, clock)


async def _run(
    spec: JobSpec, period: Period, holder: str, claimed: Acquired, clock: WallClock
) -> RunRecord:
    """Run the body once under the deadline (and the lease); finish; say how it went."""
    run = JobRun(spec.name, period, holder, claimed.fence)
    started = clock()
    outcome, error, summary = Outcome.SUCCEEDED, None, None
    lost = False
    with trio.CancelScope() as job_scope:
        async with trio.open_nursery() as nursery:
            if claimed.lease_seconds is not None and claimed.fence is not None:

                def on_lost() -> None:
                    nonlocal lost
                    lost = True
                    job_scope.cancel()

                nursery.start_soon(
                    _keep_lease, spec, period, claimed.fence, claimed.lease_seconds, on_lost
                )
            try:
                with trio.fail_after(spec.deadline):
                    summary = await spec.body(run)
            except trio.TooSlowError:
                outcome, error = Outcome.TIMEOUT, f"ran past its {spec.deadline:g} s deadline"
            except Exception as exc:
                outcome, error = Outcome.FAILED, describe_error(exc)
                if isinstance(exc, spec.quiet_errors):
                    logger.warning("job %s failed in %s: %s", spec.name, period.key, error)
                else:
                    logger.error("job %s failed in %s", spec.name, period.key, exc_info=exc)
            nursery.cancel_scope.cancel()
    if lost:
        outcome, error = Outcome.LOST, "the lease was lost; the run was cancelled"
    seconds = (clock() - started).total_seconds()
    if outcome is not Outcome.LOST:
        with trio.CancelScope(shield=True), trio.move_on_after(FINISH_TIMEOUT):
            try:
                kept = await spec.claims.finish(
                    spec.name,
                    period,
                    claimed.fence,
                    succeeded=outcome is Outcome.SUCCEEDED,
                    summary=_describe(summary, error),
                )
            except Exception as exc:
                kept = True  # the lease lapses by itself; the run's own writes were fenced
                logger.warning(
                    "job %s: could not record the end of %s: %s",
                    spec.name,
                    period.key,
                    describe_error(exc),
                )
            if not kept:
                outcome, error = Outcome.LOST, "fenced out: a newer holder took the period over"
    logger.info(
        "job %s %s in %s (%.3f s)%s",
        spec.name,
        outcome.value,
        period.key,
        seconds,
        f": {_describe(summary, error)}" if summary or error else "",
        extra={
            "job": spec.name,
            "period": period.key,
            "outcome": outcome.value,
            "seconds": round(seconds, 3),
            "holder": holder,
            "fence": claimed.fence,
            **({"summary": dict(summary)} if summary else {}),
        },
    )
    return RunRecord(spec.name, period, outcome, seconds, holder, claimed.fence, error)


def _describe(summary: Mapping[str, object] | None, error: str | None) -> str:
    if error is not None:
        return error
    if not summary:
        return ""
    return ", ".join(f"{key}={value}" for key, value in summary.items())


async def _keep_lease(
    spec: JobSpec,
    period: Period,
    fence: int,
    lease_seconds: float,
    on_lost: Callable[[], None],
) -> None:
    """Renew the lease every third of its length; call ``on_lost`` once it cannot be kept.

    Lost: the store says another holder took over, or no renewal succeeded before the lease
    would have lapsed as measured here (a store that cannot be reached gives no lease).
    """
    interval = lease_seconds / RENEWALS_PER_LEASE
    lapses_at = trio.current_time() + lease_seconds
    while True:
        await trio.sleep(interval)
        asked_at = trio.current_time()
        renewed: bool | None = None
        with trio.move_on_at(lapses_at):
            try:
                renewed = await spec.claims.renew(spec.name, period, fence)
            except Exception as error:
                logger.warning("job %s: lease renewal failed: %s", spec.name, describe_error(error))
        if renewed:
            lapses_at = asked_at + lease_seconds
        elif renewed is False or trio.current_time() >= lapses_at:
            logger.warning("job %s lost its lease on %s", spec.name, period.key)
            on_lost()
            return


def job_child(
    spec: JobSpec,
    *,
    holder: str,
    registry: StatusRegistry,
    clock: WallClock = utc_now,
    on_run: RunCallback | None = None,
    backoff: Backoff | None = None,
    budget: RestartBudget | None = None,
) -> ChildSpec:
    """The supervised child that runs ``spec`` (see :func:`run_job`).

    A failing run does not end the child; only a bug in the loop itself does, and then the
    supervisor restarts it (permanent policy) with ``backoff`` under ``budget``.
    """
    run = functools.partial(
        run_job, spec, holder=holder, registry=registry, clock=clock, on_run=on_run
    )
    return ChildSpec(
        name=spec.name,
        run=run,
        policy=RestartPolicy.PERMANENT,
        backoff=backoff or Backoff(),
        budget=budget or RestartBudget(),
    )
