"""The scheduled jobs of this process, built from the catalogue and the resources.

``tasks/catalogue.py`` names every job with its default period, kind and deadline; this module
gives each its body (the ``tasks`` coroutine with what it needs from the resources), its
claims store (Redis claims for cheap jobs, fenced Postgres leases for jobs that must
complete), and the operator's overrides (``SMARTPIP_JOBS_SCHEDULE``, ``SMARTPIP_JOBS_PAUSED``).
A job whose feature is not configured (warming without a YouTube key) is left out.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping

import attrs
import trio

from smartpip.config import Config
from smartpip.runtime.resources import Resources
from smartpip.suggest.corpus import MAX_CORPUS_DAYS
from smartpip.suggest.quota import pacific_day
from smartpip.suggest.service import Suggester
from smartpip.suggest.warming import SuggestWarming
from store.jobs import claim_holder, select_job_runs
from store.postgres import DatabaseUnavailable
from store.redis import RedisUnavailable
from supervisors import Claims, JobBody, JobRun, JobSpec, RunRecord, run_period, utc_now
from tasks.backup import backup_job
from tasks.catalogue import JOBS
from tasks.claims import PostgresLeases, RedisClaims, fenced
from tasks.cleanup import CleanupPolicy, PostgresCleanup, run_cleanup
from tasks.quota import PostgresSaves, RedisCounters, persist_quota
from tasks.warm import RedisWarmLedger, WarmSettings, warm

__all__ = [
    "cleanup_policy",
    "job_bodies",
    "job_specs",
    "jobs_report",
    "quota_body",
    "replica_name",
    "run_job_now",
    "warm_body",
]


def replica_name(config: Config) -> str:
    """This process's name in claims and leases: ``SMARTPIP_REPLICA_NAME``, or host and pid."""
    return config.replica_name or f"{socket.gethostname()}-{os.getpid()}"


def cleanup_policy(config: Config) -> CleanupPolicy:
    """The cleanup job's retentions and batch bounds from the configuration."""
    return CleanupPolicy(
        session_retention_days=config.session_retention_days,
        audit_retention_days=config.audit_retention_days,
        batch_size=config.cleanup_batch_size,
        max_batches=config.cleanup_max_batches,
        # With the corpus off (0 days) nothing is written, and rows left from before still
        # go after YouTube's 30 days.
        corpus_days=config.suggest_corpus_days or MAX_CORPUS_DAYS,
    )


def job_bodies(resources: Resources) -> dict[str, JobBody]:
    """Each job's body, wired to the resources it uses (jobs whose feature is off are absent)."""
    bodies: dict[str, JobBody] = {}
    if resources.suggest is not None:
        bodies["warm"] = warm_body(resources, resources.suggest)
        bodies["quota"] = quota_body(resources)
    store = PostgresCleanup(resources.db)
    policy = cleanup_policy(resources.config)

    async def cleanup(run: JobRun) -> Mapping[str, object]:
        del run  # a claim job: nothing to fence; retentions count back from the wall clock
        return await run_cleanup(
            store, policy, utc_now(), on_deleted=resources.metrics.on_cleanup_deleted
        )

    bodies["cleanup"] = cleanup
    if resources.backups is not None:  # absent without SMARTPIP_BACKUP_S3_BUCKET
        db = resources.db
        bodies["backup"] = backup_job(resources.backups, lambda run: fenced(db, run))
    return bodies


def quota_body(resources: Resources) -> JobBody:
    """The ``quota`` job: save today's (and yesterday's) YouTube quota usage to Postgres,
    restoring Redis's counter first if it holds less (``tasks.quota``)."""
    counters, saves = RedisCounters(resources.redis), PostgresSaves(resources.db)

    async def body(run: JobRun) -> Mapping[str, object]:
        del run  # the day is the gate's (the resources' clock), not the period's
        today = pacific_day(dt.datetime.fromtimestamp(resources.clock(), dt.UTC))
        return await persist_quota(today, counters, saves)

    return body


def warm_body(resources: Resources, suggester: Suggester) -> JobBody:
    """The ``warm`` job: :func:`tasks.warm.warm` over the suggest service and Redis."""
    config = resources.config
    target = SuggestWarming(suggester, resources.redis, resources.clock)
    ledger = RedisWarmLedger(resources.redis)
    settings = WarmSettings(
        daily_budget=config.suggest_daily_budget,
        share=config.warm_share,
        reserve=config.warm_reserve,
        max_per_run=config.warm_max_per_run,
    )

    async def warm_now(run: JobRun) -> Mapping[str, object]:
        now = dt.datetime.fromtimestamp(resources.clock(), dt.UTC)
        report = await warm(target, ledger, settings, now=now, next_run=run.period.end)
        return report.summary()

    async def body(run: JobRun) -> Mapping[str, object]:
        if suggester.running:
            return await warm_now(run)
        # `smartpip jobs run warm`: no server runs suggest's flights in this process.
        async with trio.open_nursery() as nursery:
            await nursery.start(suggester.run_flights)
            summary = await warm_now(run)
            nursery.cancel_scope.cancel()
        return summary

    return body


def claims_for(resources: Resources, kind: str) -> Claims:
    """The claims store of a job of ``kind`` (``claim`` or ``lease``)."""
    if kind == "lease":
        return PostgresLeases(resources.db, resources.config.job_lease_seconds)
    return RedisClaims(resources.redis)


def job_specs(resources: Resources, bodies: Mapping[str, JobBody] | None = None) -> list[JobSpec]:
    """Every scheduled job this process runs, in catalogue order.

    Args:
        resources: The composition root's resources.
        bodies: The bodies to use (default: :func:`job_bodies`).
    """
    config = resources.config
    bodies = job_bodies(resources) if bodies is None else bodies
    schedules = dict(config.jobs_schedule)
    specs = []
    for name, defaults in JOBS.items():
        body = bodies.get(name)
        if body is None:
            continue
        specs.append(
            JobSpec(
                name=name,
                schedule=schedules.get(name, defaults.schedule),
                body=body,
                claims=claims_for(resources, defaults.kind),
                deadline=defaults.deadline,
                paused=name in config.jobs_paused,
                # A store outage fails the run quietly (WARNING); the next period runs.
                quiet_errors=(DatabaseUnavailable, RedisUnavailable),
                retry_after=defaults.retry_after,
            )
        )
    return specs


async def jobs_report(resources: Resources) -> list[dict[str, object]]:
    """Every job of the catalogue with its settings, current period and holder (for
    ``smartpip jobs list``); lease jobs also list their latest runs."""
    config = resources.config
    specs = {spec.name: spec for spec in job_specs(resources)}
    schedules = dict(config.jobs_schedule)
    now = utc_now()
    report: list[dict[str, object]] = []
    for name, defaults in JOBS.items():
        schedule = schedules.get(name, defaults.schedule)
        period = schedule.period_at(now)
        entry: dict[str, object] = {
            "job": name,
            "about": defaults.about,
            "kind": defaults.kind,
            "schedule": schedule.describe(),
            "enabled": name in specs,
            "paused": name in config.jobs_paused,
            "deadlineSeconds": defaults.deadline,
            "period": period.key,
        }
        try:
            if defaults.kind == "claim":
                entry["holder"] = await claim_holder(resources.redis, name, period.key)
            else:
                runs = await resources.db.run(select_job_runs, name, limit=5)
                entry["holder"] = next(
                    (run.holder for run in runs if run.period_start == period.start), None
                )
                entry["runs"] = [
                    {
                        "period": run.period_start.isoformat(),
                        "holder": run.holder,
                        "fence": run.fence,
                        "state": run.state,
                        "attempts": run.attempts,
                        "summary": run.summary,
                    }
                    for run in runs
                ]
        except (DatabaseUnavailable, RedisUnavailable) as error:
            entry["error"] = str(error)
        report.append(entry)
    return report


async def run_job_now(resources: Resources, name: str) -> RunRecord:
    """Run ``name``'s current period now, through its claim (``smartpip jobs run``).

    Raises:
        KeyError: no such job, or it is not enabled on this deployment.
    """
    specs = {spec.name: spec for spec in job_specs(resources)}
    if name not in specs:
        raise KeyError(name)
    spec = attrs.evolve(specs[name], paused=False)
    return await run_period(spec, holder=f"{replica_name(resources.config)}-cli")
