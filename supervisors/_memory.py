"""In-memory claims and leases: the same protocol as the Redis and Postgres stores.

For tests under trio's MockClock (real I/O and the mock clock do not mix) and for reading
the rules in one place. Several :func:`~._jobs.run_job` loops sharing one instance behave
like replicas sharing Redis or Postgres. Only trio tasks of one thread use an instance, and
no method awaits while it changes state, so each call is atomic.
"""

from __future__ import annotations

import datetime as dt

import attrs

from ._jobs import Acquired, Held, WallClock, utc_now
from ._schedule import Period

__all__ = ["FencedOut", "MemoryClaims", "MemoryLeases"]


class FencedOut(Exception):
    """A write carried a fencing token older than the period's current one."""


@attrs.define
class MemoryClaims:
    """Claims: the first replica to ask for a period gets it; the claim is never released.

    Attributes:
        clock: the wall clock claims expire on.
        grace: how long after its period a claim is kept (then forgotten).
    """

    clock: WallClock = utc_now
    grace: dt.timedelta = dt.timedelta(minutes=1)
    kind: str = "claim"
    _claims: dict[tuple[str, dt.datetime], tuple[str, dt.datetime]] = attrs.field(factory=dict)

    async def acquire(self, job: str, period: Period, holder: str) -> Acquired | Held:
        now = self.clock()
        key = (job, period.start)
        current = self._claims.get(key)
        if current is not None and current[1] > now:
            return Held(holder=current[0])
        self._claims[key] = (holder, period.end + self.grace)
        return Acquired()

    async def renew(self, job: str, period: Period, fence: int) -> bool:
        return True

    async def finish(
        self, job: str, period: Period, fence: int | None, *, succeeded: bool, summary: str
    ) -> bool:
        return True


@attrs.define
class _Lease:
    holder: str
    fence: int
    until: dt.datetime
    state: str  # running, succeeded, failed


@attrs.define
class MemoryLeases:
    """Leases with fencing, as ``store.jobs`` keeps them in Postgres.

    - ``acquire``: a period nobody holds, one whose holder failed, or one whose lease lapsed
      is handed out with a new, larger fencing token; a running, unexpired lease or a
      succeeded period is refused (:class:`~._jobs.Held`, with when to try a takeover).
    - ``renew`` and ``finish`` succeed only with the period's current token.
    - :meth:`write` is a job's write: refused with :class:`FencedOut` unless its token is
      the current one (so an old holder cannot write after a takeover).

    Attributes:
        clock: the wall clock leases lapse on (the store's clock, as Postgres's ``now()``).
        lease: how long a lease lasts without renewal.
    """

    clock: WallClock = utc_now
    lease: dt.timedelta = dt.timedelta(seconds=30)
    kind: str = "lease"
    writes: list[tuple[str, dt.datetime, int, object]] = attrs.field(factory=list)
    refused: list[tuple[str, dt.datetime, int, object]] = attrs.field(factory=list)
    _rows: dict[tuple[str, dt.datetime], _Lease] = attrs.field(factory=dict)
    _next_fence: int = 1

    async def acquire(self, job: str, period: Period, holder: str) -> Acquired | Held:
        now = self.clock()
        row = self._rows.get((job, period.start))
        if row is not None and row.state == "succeeded":
            return Held(holder=row.holder, fence=row.fence)
        if row is not None and row.state == "running" and row.until > now:
            return Held(holder=row.holder, retry_at=row.until, fence=row.fence)
        fence, self._next_fence = self._next_fence, self._next_fence + 1
        self._rows[(job, period.start)] = _Lease(holder, fence, now + self.lease, "running")
        return Acquired(fence=fence, lease_seconds=self.lease.total_seconds())

    async def renew(self, job: str, period: Period, fence: int) -> bool:
        row = self._rows.get((job, period.start))
        if row is None or row.fence != fence or row.state != "running":
            return False
        row.until = self.clock() + self.lease
        return True

    async def finish(
        self, job: str, period: Period, fence: int | None, *, succeeded: bool, summary: str
    ) -> bool:
        row = self._rows.get((job, period.start))
        if row is None or row.fence != fence:
            return False
        row.state = "succeeded" if succeeded else "failed"
        row.until = self.clock()
        return True

    def write(self, job: str, period: Period, fence: int | None, value: object) -> None:
        """A fenced write of a job (recorded in :attr:`writes`, or refused).

        Raises:
            FencedOut: ``fence`` is not the period's current token.
        """
        row = self._rows.get((job, period.start))
        if fence is None or row is None or row.fence != fence:
            self.refused.append((job, period.start, fence or 0, value))
            raise FencedOut(f"{job} {period.key}: token {fence} is not the current one")
        self.writes.append((job, period.start, fence, value))

    def state(self, job: str, period: Period) -> tuple[str, int] | None:
        """The period's (state, fence), or None when nobody took it."""
        row = self._rows.get((job, period.start))
        return None if row is None else (row.state, row.fence)
