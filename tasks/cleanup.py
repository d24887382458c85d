"""The cleanup job: delete what is past its retention, in bounded batches.

Each run walks the kinds of :data:`KINDS` in order; for each it deletes batches of at most
``batch_size`` rows (each batch one statement in its own short transaction, see
``store.cleanup``) while a batch comes back full, at most ``max_batches`` batches per kind
and run, pausing ``pause_seconds`` between batches. A backlog bigger than one run's cap is
finished by the next runs (``capped`` in the summary says so). Every batch is counted as it
commits (``on_deleted``, the metric ``cleanup_deleted_total{kind}``), so a run that fails
or times out halfway still reports what it removed; the counts of a whole run are its
summary, logged on the job's line (``job cleanup succeeded in ...: sessions=...``).

The job is a "claim" job (``tasks/catalogue.py``): idempotent, so a period that fails is
simply done again by the next one.

What each kind removes and why no orphans are looked for: ``store.cleanup``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

from store.cleanup import (
    delete_audit_past,
    delete_corpus_past,
    delete_history_past_retention,
    delete_job_runs_past,
    delete_sessions_past,
)
from store.postgres import Database

__all__ = [
    "KINDS",
    "CleanupPolicy",
    "CleanupStore",
    "KindResult",
    "PostgresCleanup",
    "delete_in_batches",
    "run_cleanup",
]

logger = logging.getLogger(__name__)

#: What a run deletes, in this order (also the values of the metric's ``kind`` label).
KINDS = ("sessions", "audit", "history", "job_runs", "corpus")


@attrs.frozen
class CleanupPolicy:
    """Retentions and batch bounds.

    Attributes:
        session_retention_days: A refresh token is deleted this long after it was revoked or
            expired (a family that ended goes whole).
        audit_retention_days: Audit rows (and finished job runs) are deleted this long after
            they were written (their period ended).
        corpus_days: Suggest corpus rows (videos YouTube returned) are deleted this long after
            a search last fetched them; at most 30 (YouTube's developer policies).
        batch_size: Rows per batch (one statement, one transaction).
        max_batches: Batches per kind and run.
        pause_seconds: Pause between two batches.
    """

    session_retention_days: int = 30
    audit_retention_days: int = 90
    corpus_days: int = 30
    # Why 1,000 rows: a batch of primary-key deletes this size takes milliseconds and holds
    # its row locks as briefly; big enough that a day's rows go in a few batches.
    batch_size: int = 1000
    # Why 100 batches: 100,000 rows a kind per hourly run is far above what a day produces,
    # so a backlog (after an outage, a first run) drains within a few runs without one run
    # keeping the database busy for long.
    max_batches: int = 100
    # Why 50 ms: leaves the pool to requests between two batches of a long backlog.
    pause_seconds: float = 0.05

    def __attrs_post_init__(self) -> None:
        if self.session_retention_days < 1 or self.audit_retention_days < 1:
            raise ValueError("retentions are at least one day")
        if not 1 <= self.corpus_days <= 30:
            raise ValueError("corpus_days is 1 to 30 (YouTube keeps API data 30 days at most)")
        if self.batch_size < 1 or self.max_batches < 1 or self.pause_seconds < 0:
            raise ValueError("batch_size and max_batches at least 1, pause_seconds >= 0")


class CleanupStore(Protocol):
    """Deletes one batch of a kind (``store.cleanup`` over Postgres; in memory in tests)."""

    async def delete_sessions(self, cutoff: dt.datetime, limit: int) -> int:
        """Rows of refresh-token families that ended before ``cutoff``."""
        ...

    async def delete_audit(self, cutoff: dt.datetime, limit: int) -> int:
        """Audit rows written before ``cutoff``."""
        ...

    async def delete_history(self, now: dt.datetime, limit: int) -> int:
        """History rows older than their owner's retention, counted back from ``now``."""
        ...

    async def delete_job_runs(self, cutoff: dt.datetime, limit: int) -> int:
        """Finished job runs of periods that ended before ``cutoff``."""
        ...

    async def delete_corpus(self, cutoff: dt.datetime, limit: int) -> int:
        """Suggest corpus rows a search last fetched before ``cutoff``."""
        ...


@attrs.frozen
class PostgresCleanup:
    """:class:`CleanupStore` over Postgres: each batch one ``Database.run`` transaction."""

    db: Database

    async def delete_sessions(self, cutoff: dt.datetime, limit: int) -> int:
        return await self.db.run(delete_sessions_past, cutoff, limit)

    async def delete_audit(self, cutoff: dt.datetime, limit: int) -> int:
        return await self.db.run(delete_audit_past, cutoff, limit)

    async def delete_history(self, now: dt.datetime, limit: int) -> int:
        return await self.db.run(delete_history_past_retention, now, limit)

    async def delete_job_runs(self, cutoff: dt.datetime, limit: int) -> int:
        return await self.db.run(delete_job_runs_past, cutoff, limit)

    async def delete_corpus(self, cutoff: dt.datetime, limit: int) -> int:
        return await self.db.run(delete_corpus_past, cutoff, limit)


@attrs.frozen
class KindResult:
    """What one kind's batches did in a run.

    Attributes:
        deleted: Rows deleted.
        batches: Batches run.
        capped: The last batch was full when ``max_batches`` was reached: more may be left.
    """

    deleted: int
    batches: int
    capped: bool


async def delete_in_batches(
    delete_batch: Callable[[int], Awaitable[int]],
    policy: CleanupPolicy,
    on_batch: Callable[[int], None] = lambda _deleted: None,
) -> KindResult:
    """Call ``delete_batch(policy.batch_size)`` while it deletes a full batch, within the cap.

    Args:
        delete_batch: Deletes at most its argument's rows (one transaction); returns how many.
        policy: Batch size, cap and pause.
        on_batch: Told each batch's count as soon as it committed.

    Returns:
        The rows deleted, the batches run, and whether the cap stopped it.

    Raises:
        ValueError: ``delete_batch`` deleted more than it was allowed (a bug in the store).
    """
    deleted = 0
    for batch in range(1, policy.max_batches + 1):
        if batch > 1:
            await trio.sleep(policy.pause_seconds)
        count = await delete_batch(policy.batch_size)
        if count > policy.batch_size:
            raise ValueError(f"a batch of {policy.batch_size} deleted {count} rows")
        deleted += count
        if count:
            on_batch(count)
        if count < policy.batch_size:
            return KindResult(deleted, batch, capped=False)
    return KindResult(deleted, policy.max_batches, capped=True)


async def run_cleanup(
    store: CleanupStore,
    policy: CleanupPolicy,
    now: dt.datetime,
    on_deleted: Callable[[str, int], None] = lambda _kind, _deleted: None,
) -> dict[str, object]:
    """One cleanup run: every kind of :data:`KINDS`, in bounded batches.

    Args:
        store: Where to delete.
        policy: Retentions and batch bounds.
        now: The time retentions count back from (timezone-aware).
        on_deleted: Told ``(kind, rows)`` after each batch that deleted rows (the metric).

    Returns:
        The summary for the job's log line: rows deleted per kind, and ``capped``, the kinds
        that hit ``max_batches`` (more left for the next run).
    """
    session_cutoff = now - dt.timedelta(days=policy.session_retention_days)
    audit_cutoff = now - dt.timedelta(days=policy.audit_retention_days)
    corpus_cutoff = now - dt.timedelta(days=policy.corpus_days)
    batches: dict[str, Callable[[int], Awaitable[int]]] = {
        "sessions": lambda limit: store.delete_sessions(session_cutoff, limit),
        "audit": lambda limit: store.delete_audit(audit_cutoff, limit),
        "history": lambda limit: store.delete_history(now, limit),
        "job_runs": lambda limit: store.delete_job_runs(audit_cutoff, limit),
        "corpus": lambda limit: store.delete_corpus(corpus_cutoff, limit),
    }
    summary: dict[str, object] = {}
    capped: list[str] = []
    for kind in KINDS:
        result = await delete_in_batches(batches[kind], policy, functools.partial(on_deleted, kind))
        summary[kind] = result.deleted
        if result.capped:
            capped.append(kind)
            logger.info(
                "cleanup of %s stopped after %d batches (%d rows); the next run goes on",
                kind,
                result.batches,
                result.deleted,
            )
    summary["capped"] = capped
    return summary
