"""The scheduled jobs of this process, built from the catalogue and the resources.

``tasks/catalogue.py`` names every job with its default period, kind and deadline; this module
gives each its body (the ``tasks`` coroutine with what it needs from the resources), its
claims store (Redis claims for cheap jobs, fenced Postgres leases for jobs that must
complete), and the operator's overrides (``SMARTPIP_JOBS_SCHEDULE``, ``SMARTPIP_JOBS_PAUSED``).
A job whose feature is not configured (warming without a YouTube key) is left out.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from smartpip.config import Config
from smartpip.runtime.resources import Resources
from supervisors import Claims, JobBody, JobSpec
from tasks.catalogue import JOBS
from tasks.claims import PostgresLeases, RedisClaims

__all__ = ["job_bodies", "job_specs", "replica_name"]


def replica_name(config: Config) -> str:
    """This process's name in claims and leases: ``SMARTPIP_REPLICA_NAME``, or host and pid."""
    return config.replica_name or f"{socket.gethostname()}-{os.getpid()}"


def job_bodies(resources: Resources) -> dict[str, JobBody]:
    """Each job's body, wired to the resources it uses (jobs whose feature is off are absent)."""
    del resources
    bodies: dict[str, JobBody] = {}
    return bodies


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
            )
        )
    return specs
