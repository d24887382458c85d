"""``run_periodic``: run a job every so often, forever, never two runs at once."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from ._policy import Backoff, RestartBudget, RestartPolicy
from ._spec import ChildSpec
from ._status import ChildState, StatusRegistry

_DEFAULT_BACKOFF = Backoff()
_DEFAULT_BUDGET = RestartBudget()


async def run_periodic(
    job: Callable[[], Awaitable[object]],
    *,
    interval: float | Callable[[], float],
    jitter: float = 0.1,
    name: str,
    registry: StatusRegistry | None = None,
    initial_delay: float | None = None,
    rng: random.Random | None = None,
    wake: Callable[[], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Call ``task_status.started()``, then run ``job`` forever with a fixed delay.

    Scheduling rule: runs never overlap. The next run is scheduled from the *end* of
    the previous one (fixed delay, not fixed rate), ``interval`` seconds times a random
    factor in ``[1 - jitter, 1 + jitter]`` drawn afresh each time, so replicas drift
    apart instead of hitting shared dependencies together. A job slower than
    ``interval`` therefore just runs less often. ``interval`` may be a callable, asked after
    every run, so that the job's own findings set the pace (e.g. faster while a dependency
    is down); ``wake``, if given, is awaited during each delay and ends it early when it
    returns (a run on demand; it should pace itself, since it may return at once).

    If ``job`` raises, the exception propagates: a supervisor restarts this function
    with backoff (see ``periodic_child``), which runs the job again at once.

    Args:
        job: the work; called with no arguments.
        interval: seconds between the end of one run and the start of the next (> 0), or a
            callable returning them, asked after each run.
        jitter: relative spread of each delay, in [0, 1).
        name: the job's name in ``registry``, where it must already be registered.
        registry: if given, state RUNNING, ``mark_success`` after every successful run,
            and ``next_run_at`` are recorded there.
        initial_delay: seconds before the first run (None: run at once).
        rng: source of the jitter (default: a fresh ``random.Random()``).
        wake: awaited during each delay; when it returns, the next run starts at once.
        task_status: started at once; the job's first run comes after.

    Raises:
        ValueError: for an out-of-range ``interval`` (also one a callable returns),
            ``jitter`` or ``initial_delay``.
    """
    if not callable(interval):
        _check_interval(interval)
    next_interval = interval if callable(interval) else lambda: interval
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if initial_delay is not None and initial_delay < 0:
        raise ValueError(f"initial_delay must be >= 0, got {initial_delay}")
    rng = random.Random() if rng is None else rng
    if registry is not None:
        registry.set_state(name, ChildState.RUNNING)
    task_status.started()
    delay = 0.0 if initial_delay is None else initial_delay
    while True:
        if registry is not None:
            registry.set_next_run(name, delay)
        with trio.move_on_after(delay):
            if wake is None:
                await trio.sleep_forever()
            await wake()
        if registry is not None:
            registry.set_next_run(name, None)
        await job()
        if registry is not None:
            registry.mark_success(name)
        delay = _check_interval(next_interval()) * rng.uniform(1 - jitter, 1 + jitter)


def _check_interval(interval: float) -> float:
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")
    return interval


def periodic_child(
    name: str,
    job: Callable[[], Awaitable[object]],
    *,
    interval: float | Callable[[], float],
    jitter: float = 0.1,
    registry: StatusRegistry,
    wake: Callable[[], Awaitable[object]] | None = None,
    policy: RestartPolicy = RestartPolicy.PERMANENT,
    backoff: Backoff = _DEFAULT_BACKOFF,
    budget: RestartBudget = _DEFAULT_BUDGET,
) -> ChildSpec:
    """A ``ChildSpec`` that runs ``job`` with ``run_periodic`` under a supervisor.

    Args:
        name: the child's name (also its name in ``registry``).
        job: the work; called with no arguments.
        interval: seconds between runs, or a callable returning them; see ``run_periodic``.
        jitter: relative spread of each delay; see ``run_periodic``.
        wake: ends a delay early when it returns; see ``run_periodic``.
        registry: the registry the supervisor uses; the job's runs are recorded there.
        policy: restart policy of the child.
        backoff: delay between restarts after the job raised.
        budget: restarts allowed before escalating.

    Returns:
        The spec, to pass to ``run_supervisor``.
    """
    run = functools.partial(
        run_periodic,
        job,
        interval=interval,
        jitter=jitter,
        name=name,
        registry=registry,
        wake=wake,
    )
    return ChildSpec(name=name, run=run, policy=policy, backoff=backoff, budget=budget)
