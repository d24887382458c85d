"""What runs in this process beside the HTTP server: the supervision tree, in one list.

::

    root supervisor
      health-monitor        periodic: SMARTPIP_HEALTH_INTERVAL (0.5 s while Postgres is
                            down; at once when a request suspects it is)      tasks.health
      rate-limit-settle     periodic: SMARTPIP_RATE_LIMIT_SETTLE_MS (250 ms):
                            leases rate-limit units ahead for busy clients
                            from the shared buckets in Redis       smartpip.http.ratelimit
      suggest-flights       the nursery of the YouTube searches requests share
                            (only with SMARTPIP_YOUTUBE_API_KEY)              smartpip.suggest
      suggest-bookkeeping   periodic, 5 s: popularity counts to Redis, quota
                            and breaker gauges                                tasks.suggest
      playlist-bookkeeping  periodic, 5 s: the playlists' budget seen spent
                            (/v1/status) and its gauges  (only with Grants)  smartpip.playlist
      <job>, ...            one loop per scheduled job (tasks/catalogue.py):
                            once per period across replicas, claimed or
                            leased (docs/jobs.md)                             supervisors.run_job

Every child is permanent: restarted with exponential backoff when it fails, and escalated
(the process exits 1) past its restart budget (``supervisors``). Domain objects only expose
the coroutines; their schedules and policies are decided here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from smartpip.runtime.jobs import job_specs, replica_name
from smartpip.runtime.resources import Resources
from supervisors import ChildSpec, JobSpec, job_child, periodic_child
from tasks.suggest import SuggestBookkeeping

__all__ = ["suggest_bookkeeping", "supervision_tree"]

# Why 5 s: as suggest's bookkeeping; a replica learns within seconds that another one spent
# the playlists' budget (for /v1/status), at one HMGET per period.
PLAYLIST_BOOKKEEPING_SECONDS = 5.0


def suggest_bookkeeping(resources: Resources) -> SuggestBookkeeping | None:
    """Suggest's periodic housekeeping, or None without suggest."""
    suggester = resources.suggest
    if suggester is None:
        return None
    return SuggestBookkeeping(
        resources.redis,
        suggester.query_counts,
        suggester.redis_backoff,
        suggester.refresh_gauges,
        clock=resources.clock,
    )


def supervision_tree(
    resources: Resources, *, extra_jobs: Sequence[JobSpec] = ()
) -> list[ChildSpec]:
    """Every supervised child of the process, built from the resources.

    Args:
        resources: The composition root's resources.
        extra_jobs: Scheduled jobs to run beside the service's own (tests).

    Returns:
        The children, in start order, for ``supervisors.run_supervisor``.
    """
    registry = resources.supervision
    health = resources.health
    limiter = resources.guards.limiter
    children = [
        periodic_child(
            "health-monitor",
            health.probe,
            interval=health.pace(resources.config.health_interval),
            wake=health.suspected,
            registry=registry,
        ),
        periodic_child(
            "rate-limit-settle",
            limiter.settle,
            interval=limiter.settle_interval,
            registry=registry,
        ),
    ]
    suggester, bookkeeping = resources.suggest, suggest_bookkeeping(resources)
    if suggester is not None and bookkeeping is not None:
        children += [
            ChildSpec("suggest-flights", suggester.run_flights),
            periodic_child(
                "suggest-bookkeeping",
                bookkeeping.run_once,
                interval=suggester.settings.bookkeeping_seconds,
                registry=registry,
            ),
        ]
    writer = resources.playlist
    if writer is not None:
        children.append(
            periodic_child(
                "playlist-bookkeeping",
                writer.refresh_gauges,
                interval=PLAYLIST_BOOKKEEPING_SECONDS,
                registry=registry,
            )
        )
    holder = replica_name(resources.config)
    jobs = [*job_specs(resources), *extra_jobs]
    now = datetime.fromtimestamp(resources.clock(), UTC)
    for spec in jobs:
        # The alert on a job not succeeding for several periods reads this (docs/monitoring.md).
        period = None if spec.paused else spec.schedule.period_at(now).seconds
        resources.metrics.declare_job(spec.name, period)
    children += [
        job_child(
            spec,
            holder=holder,
            registry=registry,
            on_run=resources.metrics.on_job_run,
        )
        for spec in jobs
    ]
    resources.metrics.declare_children(child.name for child in children)
    return children
