"""The claims stores of the scheduled jobs: Redis claims and Postgres leases.

They give :mod:`supervisors`' job loop (``run_job``) the ``Claims`` protocol over
:mod:`store.jobs`; the rules are written there. Which job uses which is decided in
``smartpip/runtime/tree.py``: cheap, idempotent jobs claim a period in Redis; jobs that must
complete hold a fenced lease in Postgres.
"""

from __future__ import annotations

import datetime as dt

import attrs

from store.jobs import (
    LeaseHeld,
    acquire_lease,
    check_fence,
    claim_period,
    finish_lease,
    renew_lease,
)
from store.postgres import Database
from store.redis import RedisStore
from supervisors import Acquired, Held, JobRun, Period

__all__ = ["PostgresLeases", "RedisClaims", "fenced"]

# Why 60 s: a claim must outlive its period by more than the clock skew between replicas,
# or a replica whose clock is behind could claim a period that already ran.
CLAIM_GRACE = dt.timedelta(seconds=60)


@attrs.frozen
class RedisClaims:
    """Claims in Redis: the first replica to claim a period runs it, the others skip it.

    Attributes:
        store: The Redis store.
        grace: How long a claim outlives its period.
    """

    store: RedisStore
    grace: dt.timedelta = CLAIM_GRACE
    kind: str = "claim"

    async def acquire(self, job: str, period: Period, holder: str) -> Acquired | Held:
        ttl = period.end + self.grace - dt.datetime.now(dt.UTC)
        ttl_ms = max(1, int(ttl.total_seconds() * 1000))
        current = await claim_period(self.store, job, period.key, holder, ttl_ms=ttl_ms)
        return Acquired() if current is None else Held(holder=current)

    async def renew(self, job: str, period: Period, fence: int) -> bool:
        return True

    async def finish(
        self, job: str, period: Period, fence: int | None, *, succeeded: bool, summary: str
    ) -> bool:
        return True


@attrs.frozen
class PostgresLeases:
    """Fenced leases in Postgres's ``job_runs``, on Postgres's clock.

    Attributes:
        db: The database.
        lease_seconds: How long a lease lasts without renewal (the job loop renews it every
            third of that).
    """

    db: Database
    lease_seconds: float
    kind: str = "lease"

    async def acquire(self, job: str, period: Period, holder: str) -> Acquired | Held:
        taken = await self.db.run(
            acquire_lease, job, period.start, period.end, holder, self.lease_seconds
        )
        if isinstance(taken, LeaseHeld):
            retry = taken.lease_until if taken.state == "running" else None
            return Held(holder=taken.holder, retry_at=retry, fence=taken.fence)
        return Acquired(fence=taken, lease_seconds=self.lease_seconds)

    async def renew(self, job: str, period: Period, fence: int) -> bool:
        return await self.db.run(renew_lease, job, period.start, fence, self.lease_seconds)

    async def finish(
        self, job: str, period: Period, fence: int | None, *, succeeded: bool, summary: str
    ) -> bool:
        if fence is None:
            return False
        return await self.db.run(
            finish_lease, job, period.start, fence, succeeded=succeeded, summary=summary
        )


async def fenced(db: Database, run: JobRun) -> None:
    """Check, in a transaction of its own, that ``run`` still holds its period.

    For a lease job's writes outside Postgres (an upload), right before each: a write inside
    Postgres calls :func:`store.jobs.check_fence` first in its own transaction instead.

    Raises:
        FencedOut: another replica took the period over.
        ValueError: ``run`` has no fencing token (a claim job).
    """
    if run.fence is None:
        raise ValueError(f"job {run.job} holds a claim, not a lease: there is no token to check")
    await db.run(check_fence, run.job, run.period.start, run.fence)
