"""Who runs a scheduled job's period: Redis claims and Postgres leases with fencing.

**Claims** (cheap, idempotent jobs): ``job-claim:<job>:<period start>`` is set once with the
holder's name (``SET NX PX``) and never released; it expires after the period plus a grace,
so a replica arriving later in the period finds it and skips, and Redis keeps nothing for
long. One script claims or reads the holder in one round trip.

**Leases** (jobs that must complete): a ``job_runs`` row per (job, period) with a lease on
Postgres's clock (``now()``). Concurrency rules, each enforced by one statement:

- :func:`acquire_lease` inserts the row, or takes over one whose holder failed or whose
  lease lapsed; every acquisition draws a new fencing token from the ``job_fence`` sequence,
  so tokens only grow. A running, unexpired lease or a succeeded period is never taken.
- :func:`renew_lease` and :func:`finish_lease` change the row only while it still carries the
  caller's token: after a takeover they change nothing (the caller is fenced out).
- :func:`check_fence` is the first statement of every write transaction a lease job makes:
  it locks the row (``FOR UPDATE``) if and only if it still carries the token. A takeover
  updates that row, so it waits for the write's transaction, and a write that checks after
  the takeover finds another token and raises :class:`~store.errors.FencedOut`: an old
  holder, however long it was paused, never writes after a newer one took over.

Query functions take a connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import psycopg
from coredis.commands import Script

from store.errors import FencedOut
from store.redis import RedisStore

__all__ = [
    "JobRunRow",
    "LeaseHeld",
    "acquire_lease",
    "check_fence",
    "claim_holder",
    "claim_period",
    "finish_lease",
    "renew_lease",
    "select_job_runs",
]

# -- claims (Redis) --------------------------------------------------------------------------

# KEYS[1] the claim; ARGV[1] holder, ARGV[2] TTL in ms. Returns nil when claimed now, else
# the holder that has it.
_CLAIM_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return redis.call('GET', KEYS[1])
"""
_CLAIM_SCRIPT: Script[bytes] = Script(script=_CLAIM_LUA)


async def claim_period(
    store: RedisStore, job: str, period_key: str, holder: str, *, ttl_ms: int
) -> str | None:
    """Claim a job's period for ``holder``.

    Args:
        store: The Redis store.
        job: The job's name.
        period_key: The period's start, RFC 3339.
        holder: Who claims it.
        ttl_ms: How long the claim is kept (the rest of the period plus a grace), at least 1.

    Returns:
        None when ``holder`` now has the period; else the holder that has it.

    Raises:
        RedisUnavailable: Redis is down, too slow or refused the script.
    """
    key = store.key("job-claim", job, period_key)
    reply = await store.run_script(
        _CLAIM_SCRIPT, [key], [holder, str(max(1, ttl_ms))], what="job claim"
    )
    if reply is None:
        return None
    return reply.decode() if isinstance(reply, bytes) else str(reply)


async def claim_holder(store: RedisStore, job: str, period_key: str) -> str | None:
    """Who claimed a job's period (None: nobody, or the claim expired).

    Raises:
        RedisUnavailable: Redis is down or too slow.
    """
    with store.fail_fast():
        value = await store.client.get(store.key("job-claim", job, period_key))
    return None if value is None else value.decode()


# -- leases (Postgres) -----------------------------------------------------------------------


@attrs.frozen
class LeaseHeld:
    """A period this caller could not take: who has it, with which token, until when."""

    holder: str
    fence: int
    state: str
    lease_until: dt.datetime


ACQUIRE_LEASE = """
INSERT INTO job_runs AS r
    (job, period_start, period_end, fence, holder, lease_until, state)
VALUES (%(job)s, %(start)s, %(end)s, nextval('job_fence'), %(holder)s,
        now() + make_interval(secs => %(lease)s), 'running')
ON CONFLICT (job, period_start) DO UPDATE
    SET fence = nextval('job_fence'),
        holder = EXCLUDED.holder,
        lease_until = EXCLUDED.lease_until,
        state = 'running',
        attempts = r.attempts + 1,
        started_at = now(),
        finished_at = NULL,
        summary = NULL
    WHERE r.state = 'failed' OR (r.state = 'running' AND r.lease_until < now())
RETURNING fence
"""

SELECT_LEASE = """
SELECT holder, fence, state, lease_until FROM job_runs WHERE job = %s AND period_start = %s
"""


def acquire_lease(
    conn: psycopg.Connection[Any],
    job: str,
    start: dt.datetime,
    end: dt.datetime,
    holder: str,
    lease_seconds: float,
) -> int | LeaseHeld:
    """Take a job's period for ``holder``: a new period, a failed one, or a lapsed lease.

    Args:
        conn: The connection (its own transaction: commit right after).
        job: The job's name.
        start: The period's start (aware).
        end: Its end.
        holder: Who takes it.
        lease_seconds: How long the lease lasts without renewal.

    Returns:
        The new fencing token, or who holds the period instead.
    """
    params = {
        "job": job,
        "start": start,
        "end": end,
        "holder": holder,
        "lease": lease_seconds,
    }
    row = conn.execute(ACQUIRE_LEASE, params).fetchone()
    if row is not None:
        return int(row[0])
    held = conn.execute(SELECT_LEASE, (job, start)).fetchone()
    if held is None:  # the row vanished between the statements (deleted by an operator)
        return acquire_lease(conn, job, start, end, holder, lease_seconds)
    return LeaseHeld(holder=held[0], fence=int(held[1]), state=held[2], lease_until=held[3])


RENEW_LEASE = """
UPDATE job_runs SET lease_until = now() + make_interval(secs => %s)
WHERE job = %s AND period_start = %s AND fence = %s AND state = 'running'
"""


def renew_lease(
    conn: psycopg.Connection[Any], job: str, start: dt.datetime, fence: int, lease_seconds: float
) -> bool:
    """Extend the lease of ``fence``; False when the period carries another token now."""
    return conn.execute(RENEW_LEASE, (lease_seconds, job, start, fence)).rowcount == 1


FINISH_LEASE = """
UPDATE job_runs SET state = %s, finished_at = now(), lease_until = now(), summary = %s
WHERE job = %s AND period_start = %s AND fence = %s
"""

# Why 500: a summary is a line for operators (counts, an error's first words), not a log.
MAX_SUMMARY_CHARS = 500


def finish_lease(
    conn: psycopg.Connection[Any],
    job: str,
    start: dt.datetime,
    fence: int,
    *,
    succeeded: bool,
    summary: str,
) -> bool:
    """Record how the run of ``fence`` ended; False when fenced out (changed nothing)."""
    state = "succeeded" if succeeded else "failed"
    params = (state, summary[:MAX_SUMMARY_CHARS], job, start, fence)
    return conn.execute(FINISH_LEASE, params).rowcount == 1


CHECK_FENCE = """
SELECT 1 FROM job_runs
WHERE job = %s AND period_start = %s AND fence = %s AND state = 'running'
FOR UPDATE
"""


def check_fence(conn: psycopg.Connection[Any], job: str, start: dt.datetime, fence: int) -> None:
    """Lock the period's row for this transaction if it still carries ``fence``.

    Call it first in every write transaction of a lease job (see the module docstring).

    Raises:
        FencedOut: another holder took the period over (or it ended): write nothing.
    """
    if conn.execute(CHECK_FENCE, (job, start, fence)).fetchone() is None:
        raise FencedOut(f"job {job} period {start.isoformat()}: fencing token {fence} is stale")


@attrs.frozen
class JobRunRow:
    """One row of ``job_runs``, for operators."""

    job: str
    period_start: dt.datetime
    period_end: dt.datetime
    fence: int
    holder: str
    state: str
    attempts: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    summary: str | None


SELECT_JOB_RUNS = """
SELECT job, period_start, period_end, fence, holder, state, attempts, started_at, finished_at,
       summary
FROM job_runs WHERE (%(job)s::text IS NULL OR job = %(job)s)
ORDER BY period_start DESC, job LIMIT %(limit)s
"""


def select_job_runs(
    conn: psycopg.Connection[Any], job: str | None = None, *, limit: int = 20
) -> list[JobRunRow]:
    """The latest lease runs, newest first (of one job, or of all)."""
    rows = conn.execute(SELECT_JOB_RUNS, {"job": job, "limit": limit}).fetchall()
    return [JobRunRow(*row) for row in rows]
