"""Loading, applying and checking migrations against real, scratch databases."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from store.bootstrap import migrate_database
from store.migrations import (
    MIGRATIONS_DIR,
    ChecksumMismatch,
    Migration,
    MigrationError,
    apply_migrations,
    load_migrations,
    migrate,
    migration_status,
)
from store.postgres import DatabaseUnavailable
from tests.support.pg import drop_database, unique_database_url, url_with

EXPECTED_TABLES = {
    "users",
    "video_history",
    "settings",
    "sessions",
    "audit_logs",
    "job_runs",
    "quota_days",
    "oauth_accounts",
    "youtube_playlists",
    "suggest_corpus",
}
EXPECTED_INDEXES = {
    "video_history_user_watched_idx",
    "sessions_user_id_idx",
    "sessions_family_id_idx",
    "sessions_parent_id_idx",
    "audit_logs_user_created_idx",
    "oauth_accounts_key_id_idx",
}


def write(directory: Path, name: str, text: str = "SELECT 1;\n") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def copy_migrations(directory: Path) -> Path:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, directory / path.name)
    return directory


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def applied_rows(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()


# --- loading -------------------------------------------------------------------------------


def test_load_shipped_migrations() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    # Ascending from 1, without gaps or repeats.
    assert versions == list(range(1, len(versions) + 1))
    first = migrations[0]
    assert (first.version, first.name, first.filename) == (1, "initial", "0001_initial.sql")
    data = (MIGRATIONS_DIR / "0001_initial.sql").read_bytes()
    assert first.checksum == hashlib.sha256(data).hexdigest()
    assert first.sql == data.decode()


def test_load_sorts_by_version_and_ignores_other_files(tmp_path: Path) -> None:
    write(tmp_path, "0010_ten.sql")
    write(tmp_path, "0002_two.sql")
    write(tmp_path, "0001_one.sql")
    write(tmp_path, "README.md", "not a migration")
    assert [(m.version, m.name) for m in load_migrations(tmp_path)] == [
        (1, "one"),
        (2, "two"),
        (10, "ten"),
    ]


def test_load_empty_directory(tmp_path: Path) -> None:
    assert load_migrations(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_.sql", "0000_zero.sql"]
)
def test_load_rejects_misnamed_files(tmp_path: Path, name: str) -> None:
    write(tmp_path, name)
    with pytest.raises(MigrationError, match="misnamed"):
        load_migrations(tmp_path)


def test_load_rejects_duplicate_versions(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0001_b.sql")
    with pytest.raises(MigrationError, match="share version 1"):
        load_migrations(tmp_path)


def test_load_rejects_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        load_migrations(tmp_path / "nope")


# --- applying ------------------------------------------------------------------------------


def test_apply_on_fresh_database_creates_schema(scratch_db: str) -> None:
    migrations = load_migrations()
    with psycopg.connect(scratch_db) as conn:
        assert apply_migrations(conn, migrations) == [m.version for m in migrations]
        assert conn.autocommit is False, "the caller's autocommit setting is restored"
    assert tables(scratch_db) == EXPECTED_TABLES | {"schema_migrations"}
    with psycopg.connect(scratch_db) as conn:
        indexes = {
            row[0]
            for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        }
    assert indexes >= EXPECTED_INDEXES
    assert applied_rows(scratch_db) == [(m.version, m.name) for m in migrations]


def test_apply_twice_is_idempotent(scratch_db: str) -> None:
    migrations = load_migrations()
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        assert apply_migrations(conn, migrations) != []
        assert apply_migrations(conn, migrations) == []
        assert conn.autocommit is True
    assert len(applied_rows(scratch_db)) == len(migrations)


def test_two_migrators_at_once_apply_each_migration_once(scratch_db: str, tmp_path: Path) -> None:
    # A slow first migration makes the two runs overlap for sure.
    copy_migrations(tmp_path)
    write(tmp_path, "0900_slow.sql", "SELECT pg_sleep(0.3);\nCREATE TABLE slow_marker (id int);\n")
    migrations = load_migrations(tmp_path)
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with psycopg.connect(scratch_db) as conn:
                barrier.wait(timeout=10)
                results.append(apply_migrations(conn, migrations))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(results, key=len) == [[], [m.version for m in migrations]]
    assert [row[0] for row in applied_rows(scratch_db)] == [m.version for m in migrations]


def test_failed_migration_rolls_back_and_releases_the_lock(scratch_db: str, tmp_path: Path) -> None:
    copy_migrations(tmp_path)
    bad = write(tmp_path, "0900_bad.sql", "CREATE TABLE half_done (id int);\nSELEC broken;\n")
    with psycopg.connect(scratch_db) as conn, pytest.raises(MigrationError) as raised:
        apply_migrations(conn, load_migrations(tmp_path))
    assert "migration 0900_bad.sql failed" in str(raised.value)
    assert isinstance(raised.value.__cause__, psycopg.errors.SyntaxError)
    assert "half_done" not in tables(scratch_db)
    assert 900 not in [row[0] for row in applied_rows(scratch_db)]

    # The lock is free again: another session (which would wait forever otherwise, hence the
    # lock_timeout) applies the corrected file.
    bad.write_text("CREATE TABLE half_done (id int);\n")
    with psycopg.connect(url_with(scratch_db, options="-c lock_timeout=5000")) as conn:
        assert apply_migrations(conn, load_migrations(tmp_path)) == [900]


def test_apply_refuses_a_connection_inside_a_transaction(scratch_db: str) -> None:
    with psycopg.connect(scratch_db) as conn:
        conn.execute("SELECT 1")  # opens the implicit transaction
        with pytest.raises(MigrationError, match="outside any transaction"):
            apply_migrations(conn, load_migrations())


def test_changed_applied_migration_is_refused(scratch_db: str, tmp_path: Path) -> None:
    copy_migrations(tmp_path)
    with psycopg.connect(scratch_db) as conn:
        apply_migrations(conn, load_migrations(tmp_path))
    with (tmp_path / "0001_initial.sql").open("a") as file:
        file.write("\n-- an innocent-looking edit\n")
    changed = load_migrations(tmp_path)
    with psycopg.connect(scratch_db) as conn:
        with pytest.raises(ChecksumMismatch) as raised:
            apply_migrations(conn, changed)
        assert "migration 0001_initial.sql was changed after it was applied" in str(raised.value)
        assert "write a new migration" in str(raised.value)
        with pytest.raises(ChecksumMismatch):
            migration_status(conn, changed)


# --- status --------------------------------------------------------------------------------


def test_status_before_anything_is_applied(scratch_db: str) -> None:
    migrations = load_migrations()
    with psycopg.connect(scratch_db) as conn:
        assert migration_status(conn, migrations) == migrations
    assert "schema_migrations" not in tables(scratch_db)


def test_status_reports_pending_then_none(scratch_db: str, tmp_path: Path) -> None:
    copy_migrations(tmp_path)
    with psycopg.connect(scratch_db) as conn:
        apply_migrations(conn, load_migrations(tmp_path))
        assert migration_status(conn, load_migrations(tmp_path)) == []
        write(tmp_path, "0900_next.sql", "CREATE TABLE next_one (id int);\n")
        pending = migration_status(conn, load_migrations(tmp_path))
        assert [m.version for m in pending] == [900]
        conn.rollback()
        apply_migrations(conn, load_migrations(tmp_path))
        assert migration_status(conn, load_migrations(tmp_path)) == []


def test_status_ignores_versions_unknown_to_this_release(pg_url: str) -> None:
    # pg_url's database is fully migrated; a release that knows fewer migrations is fine.
    older: list[Migration] = load_migrations()[:0]
    with psycopg.connect(pg_url) as conn:
        assert migration_status(conn, older) == []
        assert migration_status(conn, load_migrations()) == []


# --- migrate (dedicated connection) ----------------------------------------------------------


def test_migrate_applies_then_does_nothing(scratch_db: str) -> None:
    assert migrate(scratch_db) == [m.version for m in load_migrations()]
    assert migrate(scratch_db) == []
    assert tables(scratch_db) == EXPECTED_TABLES | {"schema_migrations"}


def test_migrate_unreachable_server(scratch_db: str) -> None:
    with pytest.raises(DatabaseUnavailable):
        migrate(url_with(scratch_db, port="1"), connect_timeout=2)


def test_migrate_database_creates_and_migrates(pg_database: str) -> None:
    url = unique_database_url(pg_database, "smartpip_bootstrap")
    try:
        assert migrate_database(url) == [m.version for m in load_migrations()]
        assert migrate_database(url) == []
        assert tables(url) == EXPECTED_TABLES | {"schema_migrations"}
    finally:
        drop_database(url)
