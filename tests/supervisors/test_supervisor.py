"""Tests for run_supervisor: restart timings, policies, budgets, cancellation, readiness."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from supervisors import (
    Backoff,
    ChildSpec,
    ChildState,
    EscalationError,
    RestartBudget,
    RestartPolicy,
    run_supervisor,
)

from .helpers import WALL_EPOCH, Boom, make_registry

NO_JITTER = Backoff(minimum=1.0, maximum=8.0, factor=2.0, jitter=0.0)
# Large enough that the budget never interferes with the test at hand.
ROOMY = RestartBudget(max_restarts=1000, window=1000.0)

ChildBody = Callable[[trio.TaskStatus[None]], Awaitable[None]]


def spec(
    name: str,
    body: ChildBody,
    policy: RestartPolicy = RestartPolicy.PERMANENT,
    budget: RestartBudget = ROOMY,
) -> ChildSpec:
    """A ChildSpec with jitter-free backoff, so restart times are exact."""

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        await body(task_status)

    return ChildSpec(name=name, run=run, policy=policy, backoff=NO_JITTER, budget=budget)


async def idle(task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await trio.sleep_forever()


async def test_restart_timings_follow_exponential_backoff_and_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    starts: list[float] = []
    seventh = trio.Event()

    async def failing(task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) == 7:
            seventh.set()
            await trio.sleep_forever()
        raise Boom("boom")

    async with trio.open_nursery() as nursery:
        await nursery.start(run_supervisor, "sup", [spec("flaky", failing)], registry)
        await seventh.wait()
        nursery.cancel_scope.cancel()

    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    status = registry.get("flaky")
    assert status.restarts == 6
    assert status.last_error == "Boom: boom"
    assert status.state is ChildState.STOPPED


def expect_escalation_log(caplog: pytest.LogCaptureFixture, child: str) -> None:
    """Escalation is logged at ERROR; check it, then clear it for the ERROR-log guard."""
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == ["child escalating"]
    assert errors[0].child == child  # type: ignore[attr-defined]
    caplog.clear()


async def test_budget_exhausted_escalates_and_cancels_the_others(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    registry = make_registry()
    starts: list[float] = []
    bystander_cleaned_up = False

    async def failing(task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        raise Boom(f"failure {len(starts)}")

    async def bystander(task_status: trio.TaskStatus[None]) -> None:
        nonlocal bystander_cleaned_up
        try:
            await idle(task_status)
        finally:
            bystander_cleaned_up = True

    budget = RestartBudget(max_restarts=3, window=60.0)
    children = [spec("flaky", failing, budget=budget), spec("bystander", bystander)]
    with pytest.raises(EscalationError) as info:
        await run_supervisor("sup", children, registry)

    assert info.value.child == "flaky"
    assert info.value.supervisor == "sup"
    assert isinstance(info.value.__cause__, Boom)
    assert str(info.value.__cause__) == "failure 4"
    # failures at 0, 1, 3 are restarted; the 4th, at 7 (inside 60 s), escalates.
    assert starts == [0.0, 1.0, 3.0, 7.0]
    assert trio.current_time() == 7.0
    assert bystander_cleaned_up
    flaky = registry.get("flaky")
    assert flaky.state is ChildState.FAILED
    assert flaky.restarts == 3
    assert flaky.last_error == "Boom: failure 4"
    assert registry.get("bystander").state is ChildState.STOPPED
    expect_escalation_log(caplog, "flaky")


async def test_escalation_before_started_is_raised_by_start(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    registry = make_registry()

    async def never_ready(task_status: trio.TaskStatus[None]) -> None:
        raise Boom("cannot start")

    children = [spec("broken", never_ready, budget=RestartBudget(max_restarts=2, window=60.0))]
    async with trio.open_nursery() as nursery:
        with pytest.raises(EscalationError) as info:
            await nursery.start(run_supervisor, "sup", children, registry)

    assert isinstance(info.value.__cause__, Boom)
    assert registry.get("broken").restarts == 2
    assert registry.get("broken").last_success_at is None
    expect_escalation_log(caplog, "broken")


async def test_failures_spread_beyond_the_window_do_not_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    starts: list[float] = []
    enough = trio.Event()

    async def fails_after_a_while(task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) == 8:
            enough.set()
            await trio.sleep_forever()
        await trio.sleep(11.0)  # longer than the window
        raise Boom("late")

    budget = RestartBudget(max_restarts=1, window=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            run_supervisor, "sup", [spec("slow", fails_after_a_while, budget=budget)], registry
        )
        await enough.wait()
        nursery.cancel_scope.cancel()

    # Each failure is alone in its window, so the backoff is back to its minimum each time.
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == [12.0] * 7
    assert registry.get("slow").restarts == 7


async def test_exactly_max_restarts_in_the_window_is_allowed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    runs = 0

    async def fails_three_times(task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs <= 3:
            raise Boom("again")

    budget = RestartBudget(max_restarts=3, window=60.0)
    children = [spec("job", fails_three_times, RestartPolicy.TRANSIENT, budget)]
    await run_supervisor("sup", children, registry)

    assert runs == 4
    assert registry.get("job").state is ChildState.STOPPED


async def test_permanent_child_is_restarted_after_a_clean_return(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = make_registry()
    calls: list[tuple[str, BaseException | None]] = []
    runs = 0
    third = trio.Event()

    async def returns(task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 3:
            third.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda *, task_status: run_supervisor(
                "sup",
                [spec("perm", returns)],
                registry,
                on_restart=lambda name, exc: calls.append((name, exc)),
                task_status=task_status,
            )
        )
        await third.wait()
        nursery.cancel_scope.cancel()

    assert calls == [("perm", None), ("perm", None)]
    assert registry.get("perm").restarts == 2
    assert registry.get("perm").last_error == "returned"
    restarts = [r for r in caplog.records if r.getMessage() == "child restarting"]
    assert [(r.__dict__["attempt"], r.__dict__["delay"]) for r in restarts] == [(1, 1.0), (2, 2.0)]
    assert {r.__dict__["cause"] for r in restarts} == {"returned"}


async def test_on_restart_gets_the_name_and_the_exception_and_restart_is_logged(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = make_registry()
    calls: list[tuple[str, BaseException | None]] = []
    raised: list[Boom] = []

    async def fails_once(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if not raised:
            raised.append(Boom("first"))
            raise raised[0]

    await run_supervisor(
        "sup",
        [spec("job", fails_once, RestartPolicy.TRANSIENT)],
        registry,
        on_restart=lambda name, exc: calls.append((name, exc)),
    )

    assert calls == [("job", raised[0])]
    assert calls[0][1] is raised[0]
    (record,) = [r for r in caplog.records if r.getMessage() == "child restarting"]
    assert record.levelno == logging.WARNING
    assert record.__dict__["supervisor"] == "sup"
    assert record.__dict__["child"] == "job"
    assert record.__dict__["attempt"] == 1
    assert record.__dict__["delay"] == 1.0
    assert record.__dict__["cause"] == "Boom('first')"
    assert record.exc_info is not None
    assert record.exc_info[1] is raised[0]


async def test_transient_child_stops_on_clean_exit_and_restarts_after_an_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    runs = 0

    async def fails_then_finishes(task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            raise Boom("once")

    await run_supervisor(
        "sup", [spec("job", fails_then_finishes, RestartPolicy.TRANSIENT)], registry
    )

    assert runs == 2
    assert trio.current_time() == 1.0
    status = registry.get("job")
    assert status.state is ChildState.STOPPED
    assert status.restarts == 1
    assert status.next_run_at is None


async def test_temporary_child_is_never_restarted(autojump_clock: trio.testing.MockClock) -> None:
    registry = make_registry()
    runs = 0

    async def fails(task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        raise Boom("for good")

    await run_supervisor("sup", [spec("temp", fails, RestartPolicy.TEMPORARY)], registry)

    assert runs == 1
    status = registry.get("temp")
    assert status.state is ChildState.STOPPED
    assert status.restarts == 0
    assert status.last_error == "Boom: for good"


async def test_supervisor_returns_when_every_child_ended_for_good(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()

    async def finishes(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(5.0)

    async def ends_before_started(task_status: trio.TaskStatus[None]) -> None:
        raise Boom("never ready")

    children = [
        spec("transient", finishes, RestartPolicy.TRANSIENT),
        spec("temporary", finishes, RestartPolicy.TEMPORARY),
        spec("unready", ends_before_started, RestartPolicy.TEMPORARY),
    ]
    async with trio.open_nursery() as nursery:
        # started() still comes although "unready" never called its own started().
        await nursery.start(run_supervisor, "sup", children, registry)

    assert trio.current_time() == 5.0
    assert {s["state"] for s in registry.snapshot().values()} == {"stopped"}


async def test_supervisor_without_children_returns_at_once() -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_supervisor, "empty", [], make_registry())


async def test_duplicate_child_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        await run_supervisor("sup", [spec("a", idle), spec("a", idle)], make_registry())


async def test_started_waits_for_every_child(autojump_clock: trio.testing.MockClock) -> None:
    registry = make_registry()
    release = trio.Event()
    second_attempt = trio.Event()
    supervisor_ready = trio.Event()
    attempts = 0

    async def slow_to_start(task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Boom("failed before started")
        second_attempt.set()
        await release.wait()
        await idle(task_status)

    async with trio.open_nursery() as nursery:

        async def start_supervisor() -> None:
            children = [spec("fast", idle), spec("slow", slow_to_start)]
            await nursery.start(run_supervisor, "sup", children, registry)
            supervisor_ready.set()

        nursery.start_soon(start_supervisor)
        await second_attempt.wait()
        await trio.testing.wait_all_tasks_blocked()

        assert not supervisor_ready.is_set()
        assert registry.get("fast").state is ChildState.RUNNING
        assert registry.get("slow").state is ChildState.STARTING
        assert registry.get("slow").restarts == 1

        release.set()
        await supervisor_ready.wait()
        assert registry.get("slow").state is ChildState.RUNNING
        assert registry.get("slow").last_success_at == WALL_EPOCH + 1.0
        nursery.cancel_scope.cancel()


async def test_cancelling_the_supervisor_cancels_every_child_promptly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    cleaned_up: set[str] = set()
    restarts: list[str] = []

    def tracked(name: str, before_started: bool = False, fail: bool = False) -> ChildSpec:
        async def body(task_status: trio.TaskStatus[None]) -> None:
            try:
                if not before_started:
                    task_status.started()
                if fail:
                    raise Boom("into backoff")
                await trio.sleep_forever()
            finally:
                cleaned_up.add(name)

        return spec(name, body)

    children = [
        tracked("running"),
        tracked("unready", before_started=True),
        tracked("backoff", fail=True),
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_supervisor(
                "sup", children, registry, on_restart=lambda n, e: restarts.append(n)
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        assert registry.get("backoff").state is ChildState.BACKOFF
        cancelled_at = trio.current_time()
        nursery.cancel_scope.cancel()

    assert trio.current_time() == cancelled_at  # prompt: no sleeping through the cancellation
    assert cleaned_up == {"running", "unready", "backoff"}
    assert restarts == ["backoff"]
    assert {s["state"] for s in registry.snapshot().values()} == {"stopped"}


async def test_cancelled_inside_a_child_is_not_a_failure(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = make_registry()
    restarts: list[str] = []

    async def with_inner_nursery(task_status: trio.TaskStatus[None]) -> None:
        # Its own cancel scope: Cancelled caught inside the child is its own business.
        with trio.move_on_after(1.0):
            await trio.sleep_forever()
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.sleep_forever)
            inner.start_soon(trio.sleep_forever)
            task_status.started()

    with trio.move_on_after(10.0):
        await run_supervisor(
            "sup",
            [spec("child", with_inner_nursery)],
            registry,
            on_restart=lambda n, e: restarts.append(n),
        )

    assert trio.current_time() == 10.0
    assert restarts == []
    assert registry.get("child").restarts == 0
    assert registry.get("child").last_error is None
    assert not [r for r in caplog.records if r.getMessage() == "child restarting"]


async def test_an_error_raised_while_cancelled_propagates_and_is_not_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    restarts: list[str] = []

    async def messy_cleanup(task_status: trio.TaskStatus[None]) -> None:
        try:
            await idle(task_status)
        finally:
            raise Boom("cleanup failed")

    with pytest.RaisesGroup(Boom, flatten_subgroups=True), trio.move_on_after(5.0):
        await run_supervisor(
            "sup",
            [spec("messy", messy_cleanup)],
            registry,
            on_restart=lambda n, e: restarts.append(n),
        )

    assert restarts == []
    assert registry.get("messy").restarts == 0
    assert registry.get("messy").state is ChildState.STOPPED


class Fatal(BaseException):
    """Stands in for KeyboardInterrupt/SystemExit, which must never be swallowed."""


async def test_base_exceptions_propagate_and_are_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    restarts: list[str] = []

    async def fatal(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise Fatal

    with pytest.RaisesGroup(Fatal, flatten_subgroups=True):
        await run_supervisor(
            "sup",
            [spec("fatal", fatal), spec("other", idle)],
            registry,
            on_restart=lambda n, e: restarts.append(n),
        )

    assert restarts == []
    assert registry.get("fatal").restarts == 0
    assert registry.get("other").state is ChildState.STOPPED


async def test_exception_group_from_a_child_is_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()
    causes: list[BaseException | None] = []

    async def two_failures(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if not causes:
            raise ExceptionGroup("several", [Boom("a"), KeyError("b")])

    await run_supervisor(
        "sup",
        [spec("group", two_failures, RestartPolicy.TRANSIENT)],
        registry,
        on_restart=lambda n, e: causes.append(e),
    )

    (cause,) = causes
    assert isinstance(cause, ExceptionGroup)
    assert [type(e) for e in cause.exceptions] == [Boom, KeyError]
    assert registry.get("group").last_error == "ExceptionGroup: several (2 sub-exceptions)"


async def test_snapshot_after_restarts_is_json_serialisable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = make_registry()

    async def fails_once(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if trio.current_time() == 0.0:
            raise Boom("x" * 1000)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_supervisor, "sup", [spec("job", fails_once)], registry)
        await trio.testing.wait_all_tasks_blocked()
        snapshot = registry.snapshot()
        nursery.cancel_scope.cancel()

    assert json.loads(json.dumps(snapshot)) == snapshot
    job = snapshot["job"]
    assert job["state"] == "backoff"
    assert job["supervisor"] == "sup"
    assert job["restarts"] == 1
    assert isinstance(job["last_error"], str)
    assert len(job["last_error"]) == 500
    assert job["last_error_at"] == "2023-11-14T22:13:20.000Z"
    assert job["last_success_at"] == "2023-11-14T22:13:20.000Z"
    assert job["next_run_at"] == "2023-11-14T22:13:21.000Z"
    assert job["leader"] is None
