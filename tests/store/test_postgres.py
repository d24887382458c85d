"""Database.run, the pool, ensure_database and the schema, on the real Postgres."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql

from store.bootstrap import ensure_database
from store.migrations import load_migrations, migration_status
from store.postgres import (
    DatabaseUnavailable,
    MigrationError,
    PostgresSettings,
    open_database,
    query_ping,
)
from tests.support.pg import drop_database, unique_database_url, url_with

INSERT_USER = "INSERT INTO users (oidc_iss, oidc_sub) VALUES (%s, %s) RETURNING id"
COUNT_USERS = "SELECT count(*) FROM users"


def insert_user(conn: psycopg.Connection[Any], sub: str, iss: str = "https://issuer") -> uuid.UUID:
    row = conn.execute(INSERT_USER, (iss, sub)).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def count_users(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(COUNT_USERS).fetchone()
    assert row is not None
    return int(row[0])


def show(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
    assert row is not None
    return str(row[0])


class Boom(Exception):
    pass


def insert_then_fail(conn: psycopg.Connection[Any], sub: str) -> None:
    insert_user(conn, sub)
    raise Boom(sub)


async def test_run_commits_on_success(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        user_id = await db.run(insert_user, "alice")
        assert isinstance(user_id, uuid.UUID)
        assert await db.run(count_users) == 1
    # Visible from an unrelated connection: really committed.
    with psycopg.connect(pg_url) as conn:
        assert count_users(conn) == 1


async def test_run_rolls_back_on_exception(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        with pytest.raises(Boom) as raised:
            await db.run(insert_then_fail, "bob")
        assert raised.value.args == ("bob",)
        assert await db.run(count_users) == 0


async def test_integrity_error_propagates_unchanged(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        await db.run(insert_user, "carol")
        with pytest.raises(psycopg.errors.UniqueViolation):
            await db.run(insert_user, "carol")
        # The failed transaction did not poison the pooled connection.
        assert await db.run(count_users) == 1


async def test_connection_settings(pg_url: str) -> None:
    settings = PostgresSettings(url=pg_url, statement_timeout_ms=1234)
    async with open_database(settings) as db:
        assert await db.run(show, "statement_timeout") == "1234ms"
        assert await db.run(show, "application_name") == "smartpip"
        params = await db.run(lambda conn: conn.info.get_parameters())
    assert params["keepalives"] == "1"
    assert int(params["keepalives_idle"]) > 0


async def test_options_in_the_url_are_kept(pg_url: str) -> None:
    url = url_with(pg_url, options="-c lock_timeout=4321")
    async with open_database(PostgresSettings(url=url, statement_timeout_ms=999)) as db:
        assert await db.run(show, "lock_timeout") == "4321ms"
        assert await db.run(show, "statement_timeout") == "999ms"


async def test_statement_timeout_becomes_database_unavailable(pg_url: str) -> None:
    settings = PostgresSettings(url=pg_url, statement_timeout_ms=50)
    async with open_database(settings) as db:
        with trio.fail_after(3), pytest.raises(DatabaseUnavailable) as raised:
            await db.run(lambda conn: conn.execute("SELECT pg_sleep(2)"))
        assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
        await db.ping()  # the connection survived


async def test_ping_and_stats(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url, min_size=1, max_size=3)) as db:
        await db.ping()
        stats = db.stats()
    assert {"size", "available", "waiting", "max"} <= stats.keys()
    assert all(isinstance(value, int) for value in stats.values())
    assert stats["max"] == 3
    assert 1 <= stats["size"] <= 3
    assert stats["busy"] == 0


async def test_concurrent_calls_share_the_pool(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url, max_size=2)) as db:
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(db.run, insert_user, f"user-{n}")
        assert await db.run(count_users) == 20
        assert db.stats()["size"] <= 2


async def test_closed_database_is_unavailable(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        pass
    with pytest.raises(DatabaseUnavailable):
        await db.ping()


async def test_migration_status_for_readiness(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        assert await db.run(migration_status, load_migrations()) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"max_size": 0},
        {"min_size": 5, "max_size": 2},
        {"acquire_timeout": 0},
        {"query_timeout": -1},
        {"statement_timeout_ms": -1},
    ],
)
def test_settings_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PostgresSettings(url="postgresql://x/y", **bad)  # type: ignore[arg-type]


# --- ensure_database -------------------------------------------------------------------------


def test_ensure_database_creates_a_missing_database(pg_database: str) -> None:
    url = unique_database_url(pg_database, "smartpip_ensure")
    try:
        assert ensure_database(url) is True
        assert ensure_database(url) is False
        with psycopg.connect(url) as conn:
            assert show(conn, "server_version")
    finally:
        drop_database(url)


def test_ensure_database_without_createdb_names_the_database(pg_database: str) -> None:
    role = f"smartpip_nocreate_{uuid.uuid4().hex[:8]}"
    url = unique_database_url(url_with(pg_database, user=role), "smartpip_ensure")
    with psycopg.connect(url_with(pg_database, dbname="postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
        try:
            with pytest.raises(MigrationError) as raised:
                ensure_database(url)
            dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
            assert f"database '{dbname}' does not exist" in str(raised.value)
            assert "CREATEDB" in str(raised.value)
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_ensure_database_requires_a_database_name() -> None:
    with pytest.raises(MigrationError, match="names no database"):
        ensure_database("host=127.0.0.1 user=postgres")


def test_ensure_database_server_unreachable(pg_database: str) -> None:
    # Port 1 on loopback refuses at once.
    url = url_with(pg_database, port="1", dbname="whatever")
    with pytest.raises(DatabaseUnavailable):
        ensure_database(url, connect_timeout=2)


# --- schema behaviour ------------------------------------------------------------------------


def delete_user_and_count(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> dict[str, int]:
    conn.execute(
        "INSERT INTO video_history (user_id, provider, video_id, title, url, watched_at)"
        " VALUES (%s, 'youtube', 'abc', 't', 'https://www.youtube.com/watch?v=abc', now())",
        (user_id,),
    )
    conn.execute("INSERT INTO settings (user_id) VALUES (%s)", (user_id,))
    conn.execute(
        "INSERT INTO sessions (user_id, family_id, token_hash, expires_at, absolute_expires_at)"
        " VALUES (%s, gen_random_uuid(), %s, now() + interval '1 day',"
        " now() + interval '30 days')",
        (user_id, bytes(32)),
    )
    conn.execute("INSERT INTO audit_logs (user_id, event) VALUES (%s, 'login')", (user_id,))
    conn.execute("DELETE FROM users WHERE id = %s", (user_id,))
    counts: dict[str, int] = {}
    for table in ("video_history", "settings", "sessions"):
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        assert row is not None
        counts[table] = int(row[0])
    row = conn.execute("SELECT count(*) FROM audit_logs WHERE user_id IS NULL").fetchone()
    assert row is not None
    counts["orphaned_audit_logs"] = int(row[0])
    return counts


async def test_deleting_a_user_cascades(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        user_id = await db.run(insert_user, "dave")
        counts = await db.run(delete_user_and_count, user_id)
    assert counts == {"video_history": 0, "settings": 0, "sessions": 0, "orphaned_audit_logs": 1}


async def test_check_constraints_reject_garbage(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url)) as db:
        user_id = await db.run(insert_user, "erin")
        with pytest.raises(psycopg.errors.CheckViolation):
            await db.run(
                lambda conn: conn.execute(
                    "INSERT INTO settings (user_id, skip_seconds) VALUES (%s, 301)", (user_id,)
                )
            )
        with pytest.raises(psycopg.errors.CheckViolation):
            await db.run(
                lambda conn: conn.execute(
                    "INSERT INTO sessions (user_id, family_id, token_hash, expires_at,"
                    " absolute_expires_at) VALUES (%s, gen_random_uuid(), 'short', now(), now())",
                    (user_id,),
                )
            )


def _status(conn: psycopg.Connection[Any]) -> str:
    conn.execute("SELECT 1")
    return conn.info.transaction_status.name


async def test_read_runs_without_a_transaction(pg_url: str) -> None:
    async with open_database(PostgresSettings(url=pg_url, max_size=2)) as db:
        assert await db.run(_status) == "INTRANS"
        assert await db.read(_status) == "IDLE"
        await db.read(query_ping)  # a plain statement works too


def _durability(conn: psycopg.Connection[Any]) -> dict[str, str]:
    names = ("fsync", "synchronous_commit", "full_page_writes")
    return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]


async def test_durability_settings_stay_on(pg_url: str) -> None:
    """A write answered 2xx must survive a crash: the pooled connections never turn off
    synchronous commit, and the server keeps fsync and full-page writes."""
    async with open_database(PostgresSettings(url=pg_url, max_size=1)) as db:
        assert await db.run(_durability) == {
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
        }
