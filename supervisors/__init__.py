"""A small supervision library for trio: restart policies, backoff, budgets, status, and
scheduled jobs that run once per period across replicas (claims and fenced leases).

A supervisor runs its children side by side in one nursery, restarts them with
exponential backoff when they fail, and escalates (stops everything and raises
``EscalationError``) when one fails more often than its budget allows. Every child's
status is kept in a shared ``StatusRegistry`` for health endpoints; metrics come in
through the ``on_restart`` callback, so this package has no metrics dependency.

Example::

    registry = StatusRegistry()
    tree = [periodic_child("refresh", refresh, interval=300, registry=registry)]
    await root.start(run_supervisor, "jobs", tree, registry)
"""

from ._errors import EscalationError
from ._jobs import (
    Acquired,
    Claims,
    Held,
    JobBody,
    JobRun,
    JobSpec,
    Outcome,
    RunRecord,
    job_child,
    run_job,
    run_period,
    utc_now,
)
from ._memory import FencedOut, MemoryClaims, MemoryLeases
from ._periodic import periodic_child, run_periodic
from ._policy import Backoff, RestartBudget, RestartPolicy
from ._schedule import Daily, Every, Period, Schedule
from ._spec import ChildRun, ChildSpec
from ._status import ChildState, ChildStatus, JobStatus, StatusRegistry
from ._supervisor import RestartCallback, run_supervisor

__all__ = [
    "Acquired",
    "Backoff",
    "ChildRun",
    "ChildSpec",
    "ChildState",
    "ChildStatus",
    "Claims",
    "Daily",
    "EscalationError",
    "Every",
    "FencedOut",
    "Held",
    "JobBody",
    "JobRun",
    "JobSpec",
    "JobStatus",
    "MemoryClaims",
    "MemoryLeases",
    "Outcome",
    "Period",
    "RestartBudget",
    "RestartCallback",
    "RestartPolicy",
    "RunRecord",
    "Schedule",
    "StatusRegistry",
    "job_child",
    "periodic_child",
    "run_job",
    "run_period",
    "run_periodic",
    "run_supervisor",
    "utc_now",
]
