"""Claims in Redis and fenced leases in Postgres, on the real servers."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import AsyncIterator

import psycopg
import pytest

from store.errors import FencedOut
from store.jobs import (
    LeaseHeld,
    acquire_lease,
    check_fence,
    claim_period,
    finish_lease,
    renew_lease,
    select_job_runs,
)
from store.postgres import Database, PostgresSettings, open_database
from store.redis import RedisStore
from supervisors import Acquired, Every, Held
from tasks.claims import PostgresLeases, RedisClaims
from tests.support.pg import wait_until_blocked

PERIOD = Every(3600).period_at(dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC))


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    async with open_database(PostgresSettings(url=pg_url, max_size=2)) as database:
        yield database


def lapse(pg_url: str, job: str) -> None:
    """Make the period's lease lapse on Postgres's clock (as after a holder's pause)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE job_runs SET lease_until = now() - interval '1 second' WHERE job = %s", (job,)
        )


# -- claims ----------------------------------------------------------------------------------


async def test_the_first_claim_wins_and_the_others_learn_who(redis_store: RedisStore) -> None:
    assert await claim_period(redis_store, "warm", PERIOD.key, "a", ttl_ms=60_000) is None
    assert await claim_period(redis_store, "warm", PERIOD.key, "b", ttl_ms=60_000) == "a"
    assert await claim_period(redis_store, "warm", "another-period", "b", ttl_ms=60_000) is None
    key = redis_store.key("job-claim", "warm", PERIOD.key)
    assert 0 < await redis_store.client.pttl(key) <= 60_000  # it expires by itself


async def test_redis_claims_speak_the_job_loops_protocol(redis_store: RedisStore) -> None:
    claims = RedisClaims(redis_store)
    period = Every(60).period_at(dt.datetime.now(dt.UTC))
    assert await claims.acquire("cleanup", period, "a") == Acquired()
    assert await claims.acquire("cleanup", period, "b") == Held(holder="a")
    assert await claims.finish("cleanup", period, None, succeeded=False, summary="") is True


# -- leases ----------------------------------------------------------------------------------


async def test_a_lease_is_held_until_it_lapses_then_taken_over_with_a_larger_fence(
    db: Database, pg_url: str
) -> None:
    first = await db.run(acquire_lease, "backup", PERIOD.start, PERIOD.end, "a", 30.0)
    assert isinstance(first, int)
    held = await db.run(acquire_lease, "backup", PERIOD.start, PERIOD.end, "b", 30.0)
    assert isinstance(held, LeaseHeld)
    assert (held.holder, held.fence, held.state) == ("a", first, "running")
    lapse(pg_url, "backup")
    second = await db.run(acquire_lease, "backup", PERIOD.start, PERIOD.end, "b", 30.0)
    assert isinstance(second, int) and second > first
    # The old holder is fenced out of everything: renewing, finishing, writing.
    assert not await db.run(renew_lease, "backup", PERIOD.start, first, 30.0)
    assert not await db.run(
        finish_lease, "backup", PERIOD.start, first, succeeded=True, summary="late"
    )
    with pytest.raises(FencedOut):
        await db.run(check_fence, "backup", PERIOD.start, first)
    await db.run(check_fence, "backup", PERIOD.start, second)
    assert await db.run(renew_lease, "backup", PERIOD.start, second, 30.0)
    assert await db.run(finish_lease, "backup", PERIOD.start, second, succeeded=True, summary="ok")
    (row,) = await db.run(select_job_runs, "backup")
    assert (row.holder, row.fence, row.state, row.attempts, row.summary) == (
        "b",
        second,
        "succeeded",
        2,
        "ok",
    )


async def test_a_succeeded_period_is_never_handed_out_again_but_a_failed_one_is(
    db: Database,
) -> None:
    fence = await db.run(acquire_lease, "backup", PERIOD.start, PERIOD.end, "a", 30.0)
    assert isinstance(fence, int)
    await db.run(finish_lease, "backup", PERIOD.start, fence, succeeded=False, summary="boom")
    retry = await db.run(acquire_lease, "backup", PERIOD.start, PERIOD.end, "b", 30.0)
    assert isinstance(retry, int) and retry > fence
    await db.run(finish_lease, "backup", PERIOD.start, retry, succeeded=True, summary="")
    done = await db.run(acquire_lease, "backup", PERIOD.start, PERIOD.end, "c", 30.0)
    assert isinstance(done, LeaseHeld) and done.state == "succeeded"


async def test_postgres_leases_speak_the_job_loops_protocol(db: Database, pg_url: str) -> None:
    leases = PostgresLeases(db, lease_seconds=30.0)
    taken = await leases.acquire("backup", PERIOD, "a")
    assert isinstance(taken, Acquired) and taken.fence is not None and taken.lease_seconds == 30.0
    held = await leases.acquire("backup", PERIOD, "b")
    assert isinstance(held, Held) and held.holder == "a" and held.retry_at is not None
    assert await leases.renew("backup", PERIOD, taken.fence)
    assert await leases.finish("backup", PERIOD, taken.fence, succeeded=True, summary="")
    done = await leases.acquire("backup", PERIOD, "b")
    assert isinstance(done, Held) and done.retry_at is None  # nothing to take over


def test_a_write_in_flight_holds_off_a_takeover_and_the_next_write_is_refused(
    pg_database: str, pg_url: str
) -> None:
    """The fence check locks the row: a takeover waits for the write, and is then final."""
    del pg_database
    with psycopg.connect(pg_url) as setup:
        fence = acquire_lease(setup, "backup", PERIOD.start, PERIOD.end, "a", 30.0)
        setup.commit()
    assert isinstance(fence, int)
    lapse(pg_url, "backup")
    with (
        psycopg.connect(pg_url) as writer,
        psycopg.connect(pg_url) as taker,
        psycopg.connect(pg_url, autocommit=True) as observer,
    ):
        check_fence(writer, "backup", PERIOD.start, fence)  # the old holder's write begins
        taken: list[int | LeaseHeld] = []

        def take_over() -> None:
            taken.append(acquire_lease(taker, "backup", PERIOD.start, PERIOD.end, "b", 30.0))
            taker.commit()

        thread = threading.Thread(target=take_over)
        thread.start()
        try:
            wait_until_blocked(observer, taker.info.backend_pid)
        finally:
            writer.commit()  # the write lands before the takeover, under the old token
            thread.join(timeout=10)
        assert isinstance(taken[0], int) and taken[0] > fence
        with pytest.raises(FencedOut):
            check_fence(writer, "backup", PERIOD.start, fence)
        writer.rollback()
