"""The "known down" switch and the worker-slot queue of ``Database``, on the real Postgres.

A probe (``Database.probe``, the health monitor's) that finds Postgres down makes calls fail
at once without touching the pool; one that finds it up lets them through again. A burst of
calls queues for worker slots as long as the queue timeout allows, however long that is
compared with the acquire timeout.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
import trio

from store.postgres import (
    Database,
    DatabaseUnavailable,
    PostgresSettings,
    open_database,
    query_ping,
)
from tests.support.faultproxy import FaultProxy
from tests.support.pg import url_with
from tests.support.polling import eventually

# Far beyond any test's own deadline: a call these let through can only have been ended by
# the switch, never by a timeout.
NEVER = 300.0


def proxied(pg_url: str, proxy: FaultProxy, **overrides: Any) -> PostgresSettings:
    settings: dict[str, Any] = {
        "url": url_with(pg_url, host="127.0.0.1", port=str(proxy.port)),
        "max_size": 2,
        "queue_timeout": NEVER,
        "acquire_timeout": NEVER,
        "query_timeout": NEVER,
        "probe_timeout": 0.5,
    }
    settings.update(overrides)
    return PostgresSettings(**settings)


async def probe_until_up(db: Database) -> None:
    """Probe until Postgres answers (the first probes may still find the last one stuck)."""

    async def up() -> bool:
        try:
            await db.probe(query_ping)
        except DatabaseUnavailable:
            return False
        return True

    await eventually(up)


async def test_known_down_fails_at_once_without_the_pool_then_recovers(
    pg_url: str, pg_proxy: FaultProxy
) -> None:
    async with open_database(proxied(pg_url, pg_proxy)) as db:
        await db.probe(query_ping)
        await db.ping()
        pg_proxy.mode = "hung"  # a pool checkout would now wait for its whole timeout
        with pytest.raises(DatabaseUnavailable, match="did not answer"):
            await db.probe(query_ping)
        assert db.stats()["down"] == 1
        before = db.stats()
        with trio.fail_after(5), pytest.raises(DatabaseUnavailable, match="Postgres is down"):
            await db.ping()
        after = db.stats()
        assert after["requests"] == before["requests"], "the pool was asked for a connection"
        assert after["busy"] == 0 and after["queued"] == 0
        # The abandoned probe still waits for its answer: the next probes fail at once
        # instead of starting another thread.
        with pytest.raises(DatabaseUnavailable, match="previous probe"):
            await db.probe(query_ping)

        pg_proxy.mode = "pass"
        await probe_until_up(db)
        assert db.stats()["down"] == 0
        with trio.fail_after(5):
            await db.ping()
        assert db.stats()["requests"] > after["requests"]


async def test_marking_down_fails_the_calls_already_waiting(
    pg_url: str, pg_proxy: FaultProxy
) -> None:
    async with open_database(proxied(pg_url, pg_proxy)) as db:
        await db.probe(query_ping)
        await db.ping()
        pg_proxy.mode = "hung"
        failures: list[DatabaseUnavailable] = []

        async def one() -> None:
            try:
                await db.ping()
            except DatabaseUnavailable as error:
                failures.append(error)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)
                # Two calls stuck in the frozen server, three queued for their slots; with
                # every timeout at NEVER only the switch can end them.
                await eventually(lambda: db.stats()["busy"] == 2 and db.stats()["queued"] == 3)
                with pytest.raises(DatabaseUnavailable):
                    await db.probe(query_ping)
        assert len(failures) == 5
        assert all("Postgres is down" in str(error) for error in failures)
        pg_proxy.mode = "pass"
        await probe_until_up(db)
        with trio.fail_after(5):
            await db.ping()


async def test_a_call_that_cannot_get_an_answer_asks_for_a_probe(
    pg_url: str, pg_proxy: FaultProxy
) -> None:
    async with open_database(proxied(pg_url, pg_proxy, acquire_timeout=0.5)) as db:
        await db.ping()
        pg_proxy.mode = "down"
        with trio.fail_after(5):
            with pytest.raises(DatabaseUnavailable):
                await db.ping()
            await db.availability.wait_suspected()
        # Requests never decide "down" themselves: only a probe does.
        assert db.stats()["down"] == 0
        with pytest.raises(DatabaseUnavailable):
            await db.probe(query_ping)
        assert db.stats()["down"] == 1
        pg_proxy.mode = "pass"
        await probe_until_up(db)


async def test_probe_errors_other_than_unavailability_mean_up(pg_url: str) -> None:
    class Broken(Exception):
        pass

    def broken(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT 1")
        raise Broken

    async with open_database(PostgresSettings(url=pg_url)) as db:
        db.availability.mark_down("test")
        with pytest.raises(Broken):
            await db.probe(broken)
        assert db.stats()["down"] == 0
        await db.ping()


def blocking(release: threading.Event) -> Any:
    """A query function that holds its connection (and worker slot) until ``release``."""

    def hold(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT 1")
        release.wait(timeout=30)

    return hold


async def test_a_call_queues_for_its_turn_longer_than_the_acquire_timeout(pg_url: str) -> None:
    settings = PostgresSettings(url=pg_url, max_size=1, acquire_timeout=0.1, queue_timeout=NEVER)
    release = threading.Event()
    async with open_database(settings) as db, trio.open_nursery() as nursery:
        nursery.start_soon(db.run, blocking(release))
        await eventually(lambda: db.stats()["busy"] == 1)
        done = trio.Event()

        async def queued() -> None:
            await db.ping()
            done.set()

        nursery.start_soon(queued)
        await eventually(lambda: db.stats()["queued"] == 1)
        # The slot stays taken for several acquire timeouts (the load being simulated), which
        # the old single acquire timeout turned into a 503. A fixed sleep by design: it is the
        # injected load, not a wait for a side effect.
        await trio.sleep(5 * settings.acquire_timeout)
        assert not done.is_set()
        release.set()
        with trio.fail_after(5):
            await done.wait()


async def test_the_queue_timeout_sheds_calls_when_every_slot_stays_busy(pg_url: str) -> None:
    settings = PostgresSettings(url=pg_url, max_size=1, queue_timeout=0.2)
    release = threading.Event()
    try:
        async with open_database(settings) as db, trio.open_nursery() as nursery:
            nursery.start_soon(db.run, blocking(release))
            await eventually(lambda: db.stats()["busy"] == 1)
            with trio.fail_after(5), pytest.raises(DatabaseUnavailable, match="stayed busy"):
                await db.ping()
            release.set()
    finally:
        release.set()


async def test_a_thread_whose_caller_left_before_it_had_a_connection_runs_nothing(
    pg_url: str,
) -> None:
    settings = PostgresSettings(url=pg_url, max_size=1, acquire_timeout=NEVER)
    ran = threading.Event()

    def mark(conn: psycopg.Connection[Any]) -> None:
        ran.set()

    async with open_database(settings) as db:
        await db.ping()
        # White box: take the pool's only connection behind the worker slots' back, so that
        # the next call has a slot but waits for a connection.
        pool = db._pool
        held = await trio.to_thread.run_sync(pool.getconn)
        with trio.CancelScope() as caller:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(db.run, mark)
                await eventually(lambda: db.stats()["waiting"] == 1)
                caller.cancel()
        pool.putconn(held)
        await eventually(lambda: db.stats()["busy"] == 0)
        assert not ran.is_set()


async def test_connections_idle_across_an_outage_are_checked_before_use(
    pg_url: str, pg_proxy: FaultProxy
) -> None:
    """Even one used a moment ago (``recheck_after`` would hand it out unchecked): the first
    call after recovery must not fail on a connection the outage killed."""
    settings = proxied(pg_url, pg_proxy, max_size=1, acquire_timeout=2.0, recheck_after=NEVER)
    async with open_database(settings) as db:
        await db.probe(query_ping)
        await db.ping()
        pg_proxy.mode = "down"  # resets the pooled connection and the probe's
        with pytest.raises(DatabaseUnavailable):
            await db.probe(query_ping)
        pg_proxy.mode = "pass"
        await probe_until_up(db)
        with trio.fail_after(5):
            await db.ping()
