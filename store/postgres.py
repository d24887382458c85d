"""Postgres access for trio: a psycopg connection pool driven from worker threads.

Query functions are plain sync functions ``verb_noun(conn, ...)`` with their SQL in a module
constant beside them; they never commit or roll back. ``Database.run`` gives each call a
pooled connection inside one transaction, in a worker thread, under deadlines, and turns
"Postgres is not answering" into ``DatabaseUnavailable``.

The pool is opened without waiting for Postgres, so the service starts (degraded) while the
database is down and recovers by itself when it returns. While a probe (``Database.probe``,
run by the health monitor) finds Postgres down, calls fail at once without touching the pool
(``store.pghealth``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import attrs
import psycopg
import trio
from psycopg_pool import ConnectionPool

from store.errors import DatabaseUnavailable, MigrationError
from store.pghealth import Availability, ProbeConnection, Recheck
from store.pgsettings import APPLICATION_NAME, PostgresSettings, connection_kwargs, libpq_seconds

__all__ = [
    "APPLICATION_NAME",
    "Database",
    "DatabaseUnavailable",
    "MigrationError",
    "PostgresSettings",
    "connection_kwargs",
    "libpq_seconds",
    "open_database",
    "query_ping",
]

P = ParamSpec("P")
T = TypeVar("T")

# How long the pool keeps retrying a lost connection in the background (with backoff: 1, 2,
# 4 s...) before giving its slot up. Zero: one immediate retry, then the slot is free and the
# next request that finds no connection starts a new attempt at once. Reconnection is thus
# driven by demand, and the first request after Postgres returns gets a connection instead of
# waiting for a retry scheduled seconds later.
_RECONNECT_TIMEOUT = 0.0
# Bound on closing the pool at shutdown (its maintenance threads may be stuck connecting).
_CLOSE_TIMEOUT = 3.0


class _NoFreeSlot(Exception):
    """Every worker slot stayed busy for the whole queue timeout."""


class _CallerGone(Exception):
    """The caller stopped waiting before its thread got a connection; nothing was run."""


@attrs.define
class _Ticket:
    """What a call's trio task and its worker thread share.

    ``caller_gone`` is written by the task and read by the thread (a plain attribute: one
    writer, one reader, and a late read only means the transaction runs, as with any
    abandoned call).
    """

    caller_gone: bool = False


@attrs.define
class _QueuedSlots:
    """A ``CapacityLimiter`` look-alike for ``trio.to_thread.run_sync``.

    Waits at most ``wait`` for a slot, in the limiter's first-come first-served order; once a
    slot is taken, gives the call ``budget`` seconds to get a connection and run, by moving
    the deadline of the call's ``deadline`` scope. trio releases the slot only when the thread
    really finishes, also after abandoning it.
    """

    limiter: trio.CapacityLimiter
    wait: float
    budget: float
    deadline: trio.CancelScope

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        with trio.move_on_after(self.wait):
            await self.limiter.acquire_on_behalf_of(borrower)
            self.deadline.deadline = trio.current_time() + self.budget
            return
        raise _NoFreeSlot

    def release_on_behalf_of(self, borrower: object) -> None:
        self.limiter.release_on_behalf_of(borrower)


class Database:
    """Runs sync query functions on pooled connections, one transaction per call.

    Concurrency rules:

    - A call first passes the availability switch (:class:`~store.pghealth.Availability`):
      while the last probe found Postgres down it fails at once, touching neither the worker
      slots nor the pool; a probe finding Postgres down also fails every call in flight.
    - Each call then takes one worker slot from a ``trio.CapacityLimiter`` whose size equals
      the pool's ``max_size``, and its thread takes one connection. So no more threads ever
      wait on the pool than it has connections: callers queue in trio (cheap, cancellable,
      first come first served) instead of as blocked OS threads, and a thread normally finds
      a connection at once.
    - Three bounds, one per phase: ``queue_timeout`` for the turn (a slot), ``acquire_timeout``
      for the connection once it is the call's turn, ``query_timeout`` for the work. Queueing
      is the normal answer to a burst and may last seconds; not getting a connection when
      one should be free means the database is gone, and fails within a second. On any of
      them, ``DatabaseUnavailable``, and the availability switch is asked for an early probe.
    - A call that hits a deadline or is cancelled abandons its thread. The thread keeps its
      slot until it really returns (trio releases limiter slots only then), so a hung database
      pins at most ``max_size`` threads and later callers queue in trio instead of piling up
      threads. A thread whose caller left before it got a connection runs nothing; one that
      already started may still commit: outcome unknown, writes must be idempotent.
    - Query functions must not keep the connection or start work that outlives the call, and
      must not commit or roll back themselves.
    - Every connection is checked (an empty query) when taken from the pool, so connections
      broken while Postgres restarted are replaced instead of failing a request; a failed
      check drops every idle connection (``pool.drain()``), as they are most likely dead too.
    """

    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        settings: PostgresSettings,
        recheck: Recheck | None = None,
        prober: ProbeConnection | None = None,
    ):
        self._pool = pool
        self._settings = settings
        self._recheck = recheck if recheck is not None else Recheck(settings.recheck_after)
        self._limiter = trio.CapacityLimiter(pool.max_size)
        self._prober = prober if prober is not None else _probe_connection(settings)
        self.availability = Availability()

    @property
    def settings(self) -> PostgresSettings:
        """The settings this database was opened with."""
        return self._settings

    async def run(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call ``fn(conn, *args, **kwargs)`` in a worker thread inside one transaction.

        Commits when ``fn`` returns, rolls back when it raises.

        Args:
            fn: A sync query function taking the connection first.
            *args: Passed to ``fn``.
            **kwargs: Passed to ``fn``.

        Returns:
            What ``fn`` returned.

        Raises:
            DatabaseUnavailable: Postgres is known to be down (at once), no worker slot within
                ``queue_timeout``, no connection within ``acquire_timeout``, the connection
                broke, the statement was cancelled (``statement_timeout``, admin shutdown), or
                no answer within ``query_timeout``.
            Exception: Anything else ``fn`` raised (e.g. ``psycopg.IntegrityError``), unchanged.
        """

        def call(conn: psycopg.Connection[Any]) -> T:
            return fn(conn, *args, **kwargs)

        return await self._call(call, transaction=True)

    async def read(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like :meth:`run`, without a transaction: for a query function that runs ONE read
        statement (a single statement is atomic on its own), saving the BEGIN and COMMIT
        round trips (about 70 µs of this process's CPU per call, measured).

        Raises:
            DatabaseUnavailable: as for :meth:`run`.
        """

        def call(conn: psycopg.Connection[Any]) -> T:
            return fn(conn, *args, **kwargs)

        return await self._call(call, transaction=False)

    async def probe(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call ``fn(conn, ...)`` in a transaction on the probe's own connection; its outcome
        decides whether calls are let through.

        The probe bypasses the availability switch, the worker slots and the pool, so it
        reaches Postgres while calls are refused and is never delayed by a burst of them.
        ``DatabaseUnavailable`` marks Postgres down (calls fail at once, those in flight too);
        any other outcome means Postgres answered and marks it up.

        Raises:
            DatabaseUnavailable: No answer within ``probe_timeout`` (connecting included), or
                the probe connection broke.
            Exception: Anything else ``fn`` raised, unchanged (Postgres is marked up).
        """

        def call(conn: psycopg.Connection[Any]) -> T:
            return fn(conn, *args, **kwargs)

        self.availability.clear_suspicion()
        try:
            result = await self._prober.run(call)
        except DatabaseUnavailable as error:
            self.availability.mark_down(str(error) or type(error).__name__)
            # Pooled connections idle across the outage may be dead: check each before use.
            self._recheck.distrust_all()
            raise
        except Exception:
            self.availability.mark_up()
            raise
        self.availability.mark_up()
        return result

    async def _call(self, call: Callable[[psycopg.Connection[Any]], T], *, transaction: bool) -> T:
        admitted = self.availability.admit()
        ticket = _Ticket()
        try:
            with admitted:
                try:
                    return await self._in_thread(call, ticket, transaction)
                except DatabaseUnavailable:
                    self.availability.suspect()
                    raise
                finally:
                    ticket.caller_gone = True
        finally:
            self.availability.release(admitted)
        # A probe found Postgres down while this call was in flight.
        reason = self.availability.down_reason or "a probe failed"
        raise DatabaseUnavailable(f"Postgres is down: {reason}")

    async def _in_thread(
        self, call: Callable[[psycopg.Connection[Any]], T], ticket: _Ticket, transaction: bool
    ) -> T:
        """Queue for a worker slot, then run the transaction in its thread under the budget."""
        settings = self._settings
        try:
            with trio.CancelScope() as deadline:
                slots = _QueuedSlots(
                    self._limiter,
                    wait=settings.queue_timeout,
                    budget=settings.acquire_timeout + settings.query_timeout,
                    deadline=deadline,
                )
                return await trio.to_thread.run_sync(
                    partial(self._transaction, call, ticket, transaction),
                    abandon_on_cancel=True,
                    limiter=cast(trio.CapacityLimiter, slots),
                )
        except _NoFreeSlot as exc:
            raise DatabaseUnavailable(
                f"all {self._pool.max_size} database connections stayed busy for "
                f"{settings.queue_timeout} s"
            ) from exc
        except psycopg.OperationalError as exc:
            # Also PoolTimeout, PoolClosed, QueryCanceled and AdminShutdown (all subclasses).
            raise DatabaseUnavailable(f"Postgres unavailable: {type(exc).__name__}: {exc}") from exc
        budget = settings.acquire_timeout + settings.query_timeout
        raise DatabaseUnavailable(f"Postgres did not answer within {budget} s")

    def _transaction(
        self, call: Callable[[psycopg.Connection[Any]], T], ticket: _Ticket, transaction: bool
    ) -> T:
        """Worker thread, holding a slot: take a connection within ``acquire_timeout``."""
        conn = self._pool.getconn(timeout=self._settings.acquire_timeout)
        try:
            if ticket.caller_gone:
                raise _CallerGone
            if not transaction:
                return call(conn)
            with conn.transaction():
                return call(conn)
        finally:
            self._recheck.returned(conn)
            self._pool.putconn(conn)

    async def ping(self) -> None:
        """Check that Postgres answers a trivial query.

        Raises:
            DatabaseUnavailable: It does not.
        """
        await self.run(query_ping)

    def stats(self) -> dict[str, int]:
        """Pool figures for metrics and readiness; no I/O.

        Returns:
            ``size`` (connections open or being opened), ``available`` (idle in the pool),
            ``waiting`` (threads waiting for a connection), ``queued`` (calls waiting for a
            worker slot), ``max``, ``min``, ``busy`` (worker slots in use, abandoned threads
            included), ``down`` (1 while Postgres is known to be down), and the pool's
            cumulative counters ``requests``, ``requests_errors``, ``connections_errors``,
            ``connections_lost``.
        """
        raw = self._pool.get_stats()
        return {
            "size": raw.get("pool_size", 0),
            "available": raw.get("pool_available", 0),
            "waiting": raw.get("requests_waiting", 0),
            "queued": self._limiter.statistics().tasks_waiting,
            "max": self._pool.max_size,
            "min": self._pool.min_size,
            "busy": self._limiter.borrowed_tokens,
            "down": int(self.availability.down_reason is not None),
            "requests": raw.get("requests_num", 0),
            "requests_errors": raw.get("requests_errors", 0),
            "connections_errors": raw.get("connections_errors", 0),
            "connections_lost": raw.get("connections_lost", 0),
        }


def _probe_connection(settings: PostgresSettings) -> ProbeConnection:
    """The probe's own connection, with the same parameters as the pool's."""
    connect = partial(psycopg.Connection.connect, settings.url, **connection_kwargs(settings))
    return ProbeConnection(connect, settings.probe_timeout)


@asynccontextmanager
async def open_database(settings: PostgresSettings) -> AsyncIterator[Database]:
    """Open the connection pool without waiting for Postgres; close it on exit.

    Args:
        settings: Where Postgres is and the timeouts to use.

    Yields:
        The database; calls fail with ``DatabaseUnavailable`` until Postgres answers.
    """

    recheck = Recheck(settings.recheck_after)

    def check(conn: psycopg.Connection[Any]) -> None:
        if not recheck.needed(conn):
            return  # used a moment ago: alive as far as a check could tell
        # One dead idle connection usually means the server restarted and all of them are dead:
        # drop them all now, or each request would find two, back off for a second and time out.
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            pool.drain()
            raise

    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        settings.url,
        kwargs=connection_kwargs(settings),
        min_size=settings.min_size,
        max_size=settings.max_size,
        open=False,
        name=APPLICATION_NAME,
        check=check,
        timeout=settings.acquire_timeout,
        reconnect_timeout=_RECONNECT_TIMEOUT,
    )
    pool.open(wait=False)
    prober = _probe_connection(settings)
    try:
        yield Database(pool, settings, recheck, prober)
    finally:
        # Shielded so that closing also happens when leaving because of a cancellation;
        # bounded because a worker may be stuck connecting to a hung server.
        with trio.CancelScope(shield=True):
            await prober.aclose()  # bounded by itself
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _CLOSE_TIMEOUT + 1):
            await trio.to_thread.run_sync(
                partial(pool.close, timeout=_CLOSE_TIMEOUT), abandon_on_cancel=True
            )


PING = "SELECT 1"


def query_ping(conn: psycopg.Connection[Any]) -> None:
    """Run a trivial query (readiness, ``Database.ping``)."""
    conn.execute(PING)
