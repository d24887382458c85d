"""A dead or frozen Postgres (through a FaultProxy) fails fast and is recovered from."""

from __future__ import annotations

import psycopg
import pytest
import trio

from store.postgres import Database, DatabaseUnavailable, PostgresSettings, open_database
from tests.support.faultproxy import FaultProxy
from tests.support.pg import url_with
from tests.support.polling import wait_until

# A hang guard, not a speed check: several times every timeout used below, far below the
# defaults of a driver left alone (minutes). "Fails fast" is shown by what ended the wait
# (the error names the setting), not by the clock.
HANG_GUARD = 10.0


def proxied(pg_url: str, proxy: FaultProxy) -> PostgresSettings:
    return PostgresSettings(
        url=url_with(pg_url, host="127.0.0.1", port=str(proxy.port)),
        max_size=3,
        connect_timeout=2.0,
        queue_timeout=0.5,
        acquire_timeout=0.5,
        query_timeout=1.0,
        probe_timeout=0.5,
    )


def what_ended(error: DatabaseUnavailable, settings: PostgresSettings) -> str:
    """Which bound of ``settings`` (or the connection error itself) ended a failed call."""
    message = str(error)
    budget = settings.acquire_timeout + settings.query_timeout
    if message == f"Postgres did not answer within {budget} s":
        return "call budget"
    if message.endswith(f"stayed busy for {settings.queue_timeout} s"):
        return "queue timeout"
    if message.startswith("Postgres unavailable: PoolTimeout: "):
        assert message.endswith(f"after {settings.acquire_timeout:.2f} sec"), message
        return "acquire timeout"
    if message.startswith("Postgres unavailable: "):
        return "connection error"
    raise AssertionError(f"unexpected failure: {message}")


async def ping_fails(db: Database) -> str:
    """Ping, which must raise DatabaseUnavailable (bounded by the hang guard); what ended it."""
    with trio.fail_after(HANG_GUARD), pytest.raises(DatabaseUnavailable) as raised:
        await db.ping()
    return what_ended(raised.value, db.settings)


# A dead server is noticed from the connection error, or within the acquire timeout while the
# pool's reconnection attempts keep failing; never by waiting out the query timeout.
DEAD = {"connection error", "acquire timeout"}
# A frozen server leaves nothing but the call's own bounds: its budget once it has a
# connection, the acquire timeout while the pool cannot open one (the handshake hangs too).
FROZEN = {"call budget", "acquire timeout"}


async def test_down_fails_fast_then_recovers(pg_url: str, pg_proxy: FaultProxy) -> None:
    async with open_database(proxied(pg_url, pg_proxy)) as db:
        await db.ping()
        pg_proxy.mode = "down"
        assert await ping_fails(db) in DEAD
        assert await ping_fails(db) in DEAD
        pg_proxy.mode = "pass"
        # Same pool, no reopening: the very next calls succeed.
        with trio.fail_after(HANG_GUARD):
            await db.ping()
            await db.ping()


async def test_hung_fails_within_query_timeout_then_recovers(
    pg_url: str, pg_proxy: FaultProxy
) -> None:
    async with open_database(proxied(pg_url, pg_proxy)) as db:
        await db.ping()
        pg_proxy.mode = "hung"
        # Nothing but a timeout can end a call to a frozen server: the call's own did.
        assert await ping_fails(db) in FROZEN
        # The first call's thread is still stuck in the frozen connection; later calls must
        # not wait for it (each ends by its own bounds, not a queue timeout behind it).
        assert await ping_fails(db) in FROZEN
        pg_proxy.mode = "pass"
        with trio.fail_after(HANG_GUARD):
            await db.ping()
            # The abandoned thread gets its answer too, and gives its slot back.
            await wait_until(lambda: db.stats()["busy"] == 0)


async def test_hung_burst_never_piles_up(pg_url: str, pg_proxy: FaultProxy) -> None:
    async with open_database(proxied(pg_url, pg_proxy)) as db:
        await db.ping()
        pg_proxy.mode = "hung"
        failures: list[DatabaseUnavailable] = []

        async def one() -> None:
            try:
                await db.ping()
            except DatabaseUnavailable as exc:
                failures.append(exc)

        with trio.fail_after(HANG_GUARD):
            async with trio.open_nursery() as nursery:
                for _ in range(4 * db.stats()["max"]):
                    nursery.start_soon(one)
        assert len(failures) == 4 * db.stats()["max"]
        # Each ended by a bound of its own, or by its wait for a worker slot (queue timeout).
        ended = {what_ended(failure, db.settings) for failure in failures}
        assert ended <= FROZEN | {"queue timeout"}, ended
        # Abandoned threads keep their slots, so they never outnumber the pool.
        assert db.stats()["busy"] <= db.stats()["max"]
        pg_proxy.mode = "pass"
        with trio.fail_after(HANG_GUARD):
            await db.ping()


async def test_starts_while_postgres_is_down(pg_url: str, pg_proxy: FaultProxy) -> None:
    pg_proxy.mode = "down"
    async with open_database(proxied(pg_url, pg_proxy)) as db:
        assert await ping_fails(db) in DEAD
        pg_proxy.mode = "pass"
        with trio.fail_after(HANG_GUARD):
            await db.ping()


async def test_closing_with_a_hung_server_is_bounded(pg_url: str, pg_proxy: FaultProxy) -> None:
    with trio.fail_after(2 * HANG_GUARD):  # the claim: closing does not hang
        async with open_database(proxied(pg_url, pg_proxy)) as db:
            await db.ping()
            pg_proxy.mode = "hung"
            assert await ping_fails(db) in FROZEN
        pg_proxy.mode = "pass"


TERMINATE_POOL_BACKENDS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'smartpip' AND pid <> pg_backend_pid()
"""


async def test_all_pooled_connections_killed_like_a_restart(pg_url: str) -> None:
    # recheck_after=0: every checkout is checked, as happens to connections idle for longer.
    settings = PostgresSettings(url=pg_url, max_size=4, acquire_timeout=0.5, recheck_after=0)
    async with open_database(settings) as db:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(db.run, lambda conn: conn.execute("SELECT pg_sleep(0.05)"))
        assert db.stats()["available"] >= 2, "several idle connections to kill"
        with psycopg.connect(pg_url, autocommit=True) as admin:
            row = admin.execute(TERMINATE_POOL_BACKENDS).fetchone()
        assert row is not None and row[0] >= 2
        # Every idle connection is dead; the very next call must not fail because of them.
        with trio.fail_after(HANG_GUARD):
            await db.ping()
            await db.ping()


async def test_a_connection_used_a_moment_ago_is_not_rechecked(pg_url: str) -> None:
    """The trade-off of ``recheck_after``: a connection returned less than that ago is handed
    out unchecked, so after a restart its next call fails once (503); the pool replaces it."""
    settings = PostgresSettings(url=pg_url, max_size=1, acquire_timeout=0.5, recheck_after=60)
    async with open_database(settings) as db:
        await db.ping()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            row = admin.execute(TERMINATE_POOL_BACKENDS).fetchone()
        assert row is not None and row[0] == 1
        with trio.fail_after(HANG_GUARD), pytest.raises(DatabaseUnavailable) as raised:
            await db.ping()
        assert what_ended(raised.value, settings) == "connection error"  # the killed one
        with trio.fail_after(HANG_GUARD):
            await db.ping()
