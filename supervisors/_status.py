"""The live status of every supervised child, for health endpoints and metrics.

Supervisors write to a shared ``StatusRegistry``; jobs add their own facts (a successful
run, the next scheduled run, lease leadership); readers take a JSON-ready ``snapshot()``.
"""

from __future__ import annotations

import datetime
import enum
import time
from collections.abc import Callable

import attrs

# Why 500: enough for an exception type plus a useful message, small enough that a
# status page listing every child stays readable and a huge repr cannot bloat it.
MAX_ERROR_CHARS = 500


class ChildState(enum.Enum):
    """Where a child is in its lifecycle.

    Attributes:
        STARTING: being (re)started; it has not called ``task_status.started()`` yet.
        RUNNING: it called ``task_status.started()`` and is running.
        BACKOFF: it ended and waits out its backoff delay before a restart.
        STOPPED: ended for good (policy says no restart, or its supervisor stopped).
        FAILED: its restart budget was exhausted and it escalated.
    """

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"


def describe_error(error: BaseException) -> str:
    """``"TypeName: message"`` for an exception, cut to ``MAX_ERROR_CHARS`` characters.

    Args:
        error: the exception to describe.

    Returns:
        The description.
    """
    text = f"{type(error).__name__}: {error}"
    return text[:MAX_ERROR_CHARS]


@attrs.define
class JobStatus:
    """What a scheduled job's child adds to its status (see ``supervisors._jobs``).

    Attributes:
        schedule: its periods, described (``every 600s``, ``daily 03:30 UTC``).
        kind: ``claim`` or ``lease``.
        paused: whether it is paused by configuration.
        period: the current period's key (its start, RFC 3339).
        holder: who holds the current period (this replica or another), when known.
        holder_is_self: whether that is this replica.
        fence: the holder's fencing token (leases).
        last_run_at: wall time this replica last ran the job.
        last_outcome: how that run ended (``succeeded``, ``failed``, ``timeout``, ``lost``).
        last_seconds: how long it took.
    """

    schedule: str
    kind: str
    paused: bool = False
    period: str | None = None
    holder: str | None = None
    holder_is_self: bool | None = None
    fence: int | None = None
    last_run_at: float | None = None
    last_outcome: str | None = None
    last_seconds: float | None = None

    def snapshot(self) -> dict[str, object]:
        """JSON-ready, times as RFC 3339."""
        return {
            "schedule": self.schedule,
            "kind": self.kind,
            "paused": self.paused,
            "period": self.period,
            "holder": self.holder,
            "holder_is_self": self.holder_is_self,
            "fence": self.fence,
            "last_run_at": _rfc3339(self.last_run_at),
            "last_outcome": self.last_outcome,
            "last_seconds": None if self.last_seconds is None else round(self.last_seconds, 3),
        }


@attrs.define
class ChildStatus:
    """The mutable status of one child. Wall times are Unix timestamps in seconds.

    Attributes:
        supervisor: name of the supervisor that owns the child.
        state: lifecycle state.
        restarts: restarts so far (all time, not only inside the budget window).
        last_error: cause of the last restart or escalation, ``"Type: message"``.
        last_error_at: wall time of ``last_error``.
        last_success_at: wall time the child last reported success or called started().
        next_run_at: wall time of the next restart or scheduled run, if one is pending.
        leader: whether the child holds its lease (None: not a lease-holding job).
        job: a scheduled job's own facts (None for other children).
    """

    supervisor: str
    state: ChildState = ChildState.STARTING
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    next_run_at: float | None = None
    leader: bool | None = None
    job: JobStatus | None = None


def _rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusRegistry:
    """One ``ChildStatus`` per child name, shared by every supervisor of the process.

    Concurrency: trio runs all tasks on one thread and the methods here never await, so
    each call is atomic with respect to other tasks and no lock is needed. Do not call
    it from other threads (``trio.to_thread``); go through ``trio.from_thread`` instead.

    Child names are unique across the registry: one name belongs to one supervisor.
    Every method except ``register`` raises ``KeyError`` for an unregistered name.
    """

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        """Create an empty registry.

        Args:
            wall_clock: source of wall time (Unix seconds); tests pass a fake one.
        """
        self._wall_clock = wall_clock
        self._statuses: dict[str, ChildStatus] = {}

    def register(self, name: str, supervisor: str) -> ChildStatus:
        """Add a child, or reset it to STARTING when its supervisor starts it again.

        Restart counts, errors and success times are kept across a re-registration so
        that the history of a child whose supervisor was itself restarted is not lost.

        Args:
            name: the child's name.
            supervisor: the owning supervisor's name.

        Returns:
            The child's status.

        Raises:
            ValueError: if another supervisor already registered this name.
        """
        status = self._statuses.get(name)
        if status is None:
            status = self._statuses[name] = ChildStatus(supervisor=supervisor)
        elif status.supervisor != supervisor:
            raise ValueError(f"child {name!r} already belongs to supervisor {status.supervisor!r}")
        status.state = ChildState.STARTING
        status.next_run_at = None
        return status

    def get(self, name: str) -> ChildStatus:
        """The live (mutable) status of a child."""
        return self._statuses[name]

    def set_state(self, name: str, state: ChildState) -> None:
        """Set a child's lifecycle state."""
        self._statuses[name].state = state

    def mark_success(self, name: str) -> None:
        """Record that the child started, or finished one unit of work, just now."""
        self._statuses[name].last_success_at = self._wall_clock()

    def set_next_run(self, name: str, delay_seconds: float | None) -> None:
        """Record when the child next runs, ``delay_seconds`` from now (None: not planned)."""
        status = self._statuses[name]
        status.next_run_at = None if delay_seconds is None else self._wall_clock() + delay_seconds

    def set_leader(self, name: str, leader: bool | None) -> None:
        """Record whether the child holds its lease (None: not a lease-holding job)."""
        self._statuses[name].leader = leader

    def record_restart(self, name: str, cause: str, delay_seconds: float) -> None:
        """Count a restart: state BACKOFF, error and next run set from ``cause``/delay."""
        status = self._statuses[name]
        status.restarts += 1
        status.state = ChildState.BACKOFF
        self.record_error(name, cause)
        self.set_next_run(name, delay_seconds)

    def record_failure(self, name: str, cause: str) -> None:
        """Mark a child FAILED (escalated) with the cause of its last failure."""
        status = self._statuses[name]
        status.state = ChildState.FAILED
        status.next_run_at = None
        self.record_error(name, cause)

    def record_error(self, name: str, cause: str) -> None:
        """Record why the child last ended badly (cut to ``MAX_ERROR_CHARS``), and when."""
        status = self._statuses[name]
        status.last_error = cause[:MAX_ERROR_CHARS]
        status.last_error_at = self._wall_clock()

    def snapshot(self) -> dict[str, dict[str, object]]:
        """A JSON-serialisable copy of every status, sorted by child name.

        States are lowercase strings and times RFC 3339 UTC strings (or None).

        Returns:
            ``{name: {"supervisor", "state", "restarts", "last_error", "last_error_at",
            "last_success_at", "next_run_at", "leader"}}``, plus ``"job"`` for scheduled
            jobs (:meth:`JobStatus.snapshot`).
        """
        return {
            name: {
                "supervisor": status.supervisor,
                "state": status.state.value,
                "restarts": status.restarts,
                "last_error": status.last_error,
                "last_error_at": _rfc3339(status.last_error_at),
                "last_success_at": _rfc3339(status.last_success_at),
                "next_run_at": _rfc3339(status.next_run_at),
                "leader": status.leader,
                **({"job": status.job.snapshot()} if status.job is not None else {}),
            }
            for name, status in sorted(self._statuses.items())
        }
