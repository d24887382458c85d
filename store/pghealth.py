"""Is Postgres up? The "known down" switch in front of the pool, and the probe that drives it.

:class:`Availability` is the switch every ``Database`` call passes: while Postgres is known to
be down, calls fail at once instead of waiting in the pool for a connection that cannot come.
:class:`ProbeConnection` is the only thing that changes it (through ``Database.probe``): a
query on a connection of its own, outside the pool, so that it reaches Postgres while the
switch keeps requests out, and so that a pool saturated by a burst of requests never makes a
healthy database look down.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import psycopg
import trio

from store.errors import DatabaseUnavailable

__all__ = ["Availability", "ProbeConnection", "Recheck"]

T = TypeVar("T")

# How long closing waits for a probe still in flight (it normally ends within probe_timeout);
# a probe stuck longer closes the connection itself when it ends.
_CLOSE_TIMEOUT = 1.0


class Availability:
    """Whether Postgres is known to be down; every ``Database`` call is admitted here first.

    Concurrency rules (every method runs in the trio thread, so no lock is needed):

    - Only a probe changes the state: ``Database.probe`` calls :meth:`mark_down` when Postgres
      did not answer it and :meth:`mark_up` when it did. The probe has its own connection and
      never passes through here, so it is what ends an outage, and requests flow again from
      the moment it succeeds.
    - Requests never mark Postgres down. One broken connection (a server restart, an idle
      connection cut by the network, a statement timeout) says little about the next one, and a
      wrong "down" would fail every request until the next probe. A call that finds Postgres
      unavailable only asks for an early probe (:meth:`suspect`), which decides.
    - No request is let through as a trial while down: the probe is that trial, and it is
      repeated often while down (the health monitor's choice), at no cost to any request.
    - :meth:`admit` raises at once while down. Calls admitted before (and not yet released)
      are cancelled by :meth:`mark_down`, wherever they are waiting (for a worker slot, a
      connection or an answer), and fail with the same error; a worker thread that had not
      yet started the transaction then never starts it.
    - Before the first probe the state is "up": calls try the pool (a service starting while
      Postgres is down still fails within its pool timeouts).
    """

    def __init__(self) -> None:
        self._reason: str | None = None
        self._admitted: set[trio.CancelScope] = set()
        self._suspected = trio.Event()

    @property
    def down_reason(self) -> str | None:
        """Why the last probe failed while Postgres is known to be down; None while up."""
        return self._reason

    def admit(self) -> trio.CancelScope:
        """Let a call through, or raise while Postgres is known to be down.

        Returns:
            A cancel scope for the call to run in, which :meth:`mark_down` cancels (check
            ``cancelled_caught``); hand it back to :meth:`release` when the call ends.

        Raises:
            DatabaseUnavailable: Postgres is known to be down.
        """
        if self._reason is not None:
            raise DatabaseUnavailable(f"Postgres is down: {self._reason}")
        scope = trio.CancelScope()
        self._admitted.add(scope)
        return scope

    def release(self, scope: trio.CancelScope) -> None:
        """The call admitted with ``scope`` has ended."""
        self._admitted.discard(scope)

    def mark_down(self, reason: str) -> None:
        """Fail calls at once from now on, including every call already admitted."""
        self._reason = reason
        for scope in self._admitted:
            scope.cancel()

    def mark_up(self) -> None:
        """Let calls through again."""
        self._reason = None

    def suspect(self) -> None:
        """Ask for a probe now: a call could not get an answer from Postgres."""
        self._suspected.set()

    async def wait_suspected(self) -> None:
        """Return once :meth:`suspect` has been called since the last :meth:`clear_suspicion`."""
        await self._suspected.wait()

    def clear_suspicion(self) -> None:
        """A probe is starting: suspicions raised from now on ask for the next one."""
        if self._suspected.is_set():
            self._suspected = trio.Event()


class ProbeConnection:
    """One connection of its own to Postgres, for probes; reopened when it breaks.

    Concurrency rules: one probe at a time. A probe whose thread is still waiting for
    Postgres (abandoned after its deadline, e.g. the server is frozen) keeps the connection;
    probes meanwhile fail at once without starting another thread, so a hung server pins one
    thread, never one per probe. Only the thread holding the limiter's token touches the
    connection.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._limiter = trio.CapacityLimiter(1)
        # Set by aclose; read by a probe thread that outlived it (one writer, one reader).
        self._closing = False

    async def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Call ``fn(conn)`` in a transaction, connecting first if needed, within the timeout.

        Raises:
            DatabaseUnavailable: No connection, a broken one, or no answer within the timeout.
            Exception: Anything else ``fn`` raised (Postgres answered), unchanged.
        """
        if self._limiter.borrowed_tokens:
            raise DatabaseUnavailable("the previous probe is still waiting for Postgres")
        try:
            with trio.fail_after(self._timeout):
                return await trio.to_thread.run_sync(
                    partial(self._run, fn), abandon_on_cancel=True, limiter=self._limiter
                )
        except trio.TooSlowError as exc:
            raise DatabaseUnavailable(f"Postgres did not answer within {self._timeout} s") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"Postgres unavailable: {type(exc).__name__}: {exc}") from exc

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Worker thread, holding the limiter's only token."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        conn = self._conn
        try:
            with conn.transaction():
                return fn(conn)
        except psycopg.OperationalError:
            self._conn = None
            conn.close()
            raise
        finally:
            if self._closing:  # abandoned and outlived the database: close the connection
                self._conn = None
                conn.close()

    async def aclose(self) -> None:
        """Close the connection; a probe thread still stuck with it closes it when it ends."""
        self._closing = True
        with trio.move_on_after(_CLOSE_TIMEOUT):
            async with self._limiter:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await trio.to_thread.run_sync(conn.close, abandon_on_cancel=True)


class Recheck:
    """Which pooled connections get the liveness check when taken from the pool.

    A connection returned less than ``after`` seconds ago is handed out unchecked (see
    ``PostgresSettings.recheck_after``), unless it was returned before Postgres was last found
    down: connections idle across an outage are checked whatever their age, so the first
    requests after recovery do not fail on connections the outage killed.

    Concurrency rule: worker threads record returns and read; the trio thread only moves
    ``distrust_before`` forward (one float assignment, atomic).
    """

    def __init__(self, after: float) -> None:
        self._after = after
        # connection -> monotonic time it came back to the pool.
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._distrust_before = -math.inf

    def returned(self, conn: psycopg.Connection[Any]) -> None:
        """``conn`` goes back to the pool now."""
        self._returned[conn] = time.monotonic()

    def needed(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether ``conn`` must be checked before it is handed out."""
        last = self._returned.get(conn)
        return (
            last is None or last <= self._distrust_before or time.monotonic() - last >= self._after
        )

    def distrust_all(self) -> None:
        """Check every connection returned until now on its next checkout."""
        self._distrust_before = time.monotonic()
