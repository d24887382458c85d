"""``run_supervisor``: run children side by side in one nursery and restart them.

Lifecycle rules (enforced below, next to the code that does it):

- Each child gets its own loop task in the supervisor's nursery; each run of the child
  is ``await attempt_nursery.start(spec.run)`` in a fresh nursery for that attempt.
- A *failure* is an ``Exception`` (an ``ExceptionGroup`` of Exceptions included) raised
  by the child, before or after ``started()``. Anything else that is not an Exception
  (``trio.Cancelled``, ``KeyboardInterrupt``, ``SystemExit``, or a group holding one)
  is never counted and propagates at once.
- Returning without calling ``started()`` is a failure too (trio's ``start()`` raises
  ``RuntimeError``).
- After a failure or a clean return, the child's ``RestartPolicy`` decides whether it
  is restarted. A restart is counted against the ``RestartBudget`` and waits out the
  ``Backoff`` delay, whose attempt number is the count of restarts in the window; so
  a child that has been healthy for a whole window restarts after ``minimum`` again.
- The failure beyond the budget escalates: ``EscalationError`` cancels every other
  child and propagates out of ``run_supervisor`` as a bare exception (not a group).
"""

from __future__ import annotations

import collections
import logging
import math
import random
from collections.abc import Callable, Sequence

import attrs
import trio

from ._errors import EscalationError
from ._spec import ChildSpec
from ._status import ChildState, StatusRegistry, describe_error

logger = logging.getLogger(__name__)

RestartCallback = Callable[[str, BaseException | None], None]


async def run_supervisor(
    name: str,
    children: Sequence[ChildSpec],
    registry: StatusRegistry,
    *,
    on_restart: RestartCallback | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``children`` and restart them per their specs until cancelled.

    Readiness: ``task_status.started()`` is called once every child has called its own
    ``started()`` for the first time (or ended for good without doing so). A child that
    fails before ``started()`` is restarted per its policy meanwhile; if it escalates,
    ``EscalationError`` propagates instead and ``started()`` never happens.

    Args:
        name: the supervisor's name, recorded in the registry and in logs.
        children: what to run; names must be unique.
        registry: where each child's status is kept (shared with other supervisors).
        on_restart: called as ``on_restart(child, exc_or_None)`` before each backoff
            delay; an exception it raises propagates and stops the supervisor.
        rng: source of backoff jitter (default: a fresh ``random.Random()``).
        task_status: see readiness above.

    Raises:
        EscalationError: a child exhausted its restart budget; the others were cancelled.
        ValueError: two children share a name, or a name belongs to another supervisor.
    """
    names = [spec.name for spec in children]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"supervisor {name!r}: duplicate child names {duplicates}")
    for spec in children:
        registry.register(spec.name, name)

    unsettled = len(children)
    all_settled = trio.Event()

    def settle() -> None:
        nonlocal unsettled
        unsettled -= 1
        if unsettled == 0:
            all_settled.set()

    if not children:
        all_settled.set()
    rng = random.Random() if rng is None else rng
    try:
        async with trio.open_nursery() as nursery:
            for spec in children:
                child = _Child(name, spec, registry, on_restart, rng, settle)
                nursery.start_soon(child.supervise, name=f"{name}/{spec.name}")
            await all_settled.wait()
            task_status.started()
    except BaseExceptionGroup as group:
        _raise_escalation(group)
        raise


def _raise_escalation(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise a group made only of ``EscalationError``\\s as its first one, bare.

    Two children can escalate in the same scheduling round; the others are noted on the
    raised error. A group holding anything else is left for the caller to re-raise
    whole, so that no unexpected exception (nor ``trio.Cancelled``) is swallowed.
    """
    escalations, rest = group.split(EscalationError)
    if escalations is None or rest is not None:
        return
    leaves: list[EscalationError] = []
    pending: list[BaseException] = [escalations]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        else:
            assert isinstance(exc, EscalationError)
            leaves.append(exc)
    first = leaves[0]
    for other in leaves[1:]:
        first.add_note(f"child {other.child!r} escalated at the same time: {other}")
    raise first


@attrs.define(eq=False)
class _Child:
    """The restart loop of one child; runs as one task in the supervisor's nursery."""

    supervisor: str
    spec: ChildSpec
    registry: StatusRegistry
    on_restart: RestartCallback | None
    rng: random.Random
    settle: Callable[[], None]
    settled: bool = False
    # trio.current_time() of each restart inside the budget window, oldest first.
    restart_times: collections.deque[float] = attrs.field(factory=collections.deque)

    async def supervise(self) -> None:
        """Run the child until it ends for good; raise ``EscalationError`` past budget.

        The child's state becomes STOPPED when this loop ends for any reason other than
        escalation (policy, supervisor cancelled), and FAILED on escalation.

        Only an end for good by policy settles the child's readiness: on escalation or
        cancellation the supervisor must not report itself started.
        """
        name = self.spec.name
        try:
            while True:
                self.registry.set_state(name, ChildState.STARTING)
                self.registry.set_next_run(name, None)
                error = await self._run_once()
                if not self.spec.policy.restarts_after(error):
                    if error is not None:
                        self.registry.record_error(name, _cause(error))
                    logger.log(
                        logging.INFO if error is None else logging.WARNING,
                        "child stopped",
                        extra={
                            "supervisor": self.supervisor,
                            "child": name,
                            "cause": _log_cause(error),
                        },
                        exc_info=error,
                    )
                    self._settle_once()
                    return
                await self._restart(error)
        finally:
            if self.registry.get(name).state is not ChildState.FAILED:
                self.registry.set_state(name, ChildState.STOPPED)
                self.registry.set_next_run(name, None)

    async def _run_once(self) -> Exception | None:
        """Run the child once; return its failure, or None if it returned cleanly.

        Raises:
            BaseException: anything that is not a failure (see the module docstring).
        """
        try:
            async with trio.open_nursery() as attempt:
                await attempt.start(self.spec.run)
                self.registry.set_state(self.spec.name, ChildState.RUNNING)
                self.registry.mark_success(self.spec.name)
                self._settle_once()
        except BaseExceptionGroup as group:
            # The strict attempt nursery wraps whatever the child raised in a group of
            # one: unwrap that level so the cause is the child's own exception (which
            # may itself be an ExceptionGroup: still a failure like any other).
            cause = group.exceptions[0] if len(group.exceptions) == 1 else group
            if isinstance(cause, Exception):
                return cause
            raise  # Cancelled, KeyboardInterrupt, ...: never a failure
        return None

    async def _restart(self, error: Exception | None) -> None:
        """Count a restart against the budget, log it, then sleep the backoff delay.

        An exception raised while the supervisor is being cancelled (from a child's
        cleanup) is re-raised, as trio would, not logged as a restart that the
        cancellation would abandon anyway.
        """
        if error is not None and trio.current_effective_deadline() == -math.inf:
            raise error
        name, budget = self.spec.name, self.spec.budget
        now = trio.current_time()
        self.restart_times.append(now)
        while self.restart_times[0] <= now - budget.window:
            self.restart_times.popleft()
        attempt = len(self.restart_times)
        if attempt > budget.max_restarts:
            self.registry.record_failure(name, _cause(error))
            message = (
                f"child {name!r} of supervisor {self.supervisor!r} ended ({_cause(error)}) "
                f"more than {budget.max_restarts} times in {budget.window}s"
            )
            logger.error(
                "child escalating",
                extra={"supervisor": self.supervisor, "child": name, "cause": _log_cause(error)},
                exc_info=error,
            )
            raise EscalationError(name, self.supervisor, message) from error
        delay = self.spec.backoff.delay(attempt, self.rng)
        logger.warning(
            "child restarting",
            extra={
                "supervisor": self.supervisor,
                "child": name,
                "attempt": attempt,
                "delay": delay,
                "cause": _log_cause(error),
            },
            exc_info=error,
        )
        self.registry.record_restart(name, _cause(error), delay)
        if self.on_restart is not None:
            self.on_restart(name, error)
        await trio.sleep(delay)

    def _settle_once(self) -> None:
        if not self.settled:
            self.settled = True
            self.settle()


def _cause(error: BaseException | None) -> str:
    """What ended a run, for the status: ``"returned"`` or ``"Type: message"``."""
    return "returned" if error is None else describe_error(error)


def _log_cause(error: BaseException | None) -> str:
    """What ended a run, for logs: ``"returned"`` or the exception's repr."""
    return "returned" if error is None else repr(error)
