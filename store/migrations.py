"""Numbered SQL migrations: loading, applying under an advisory lock, and status.

Migration files live in ``store/migrations/`` and are named ``NNNN_description.sql`` (four
digits, version >= 1, lowercase description). Each is applied once, in its own transaction,
and recorded in ``schema_migrations`` with the SHA-256 of its bytes; a recorded file whose
bytes changed afterwards stops startup (``ChecksumMismatch``). Statements that cannot run
inside a transaction (``CREATE INDEX CONCURRENTLY``) are not supported.

Concurrency: replicas may start at the same time. ``apply_migrations`` holds the session-level
advisory lock ``MIGRATION_LOCK_KEY`` for its whole run, so a second migrator waits for the
first, then finds every migration applied and does nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from store.errors import ChecksumMismatch, DatabaseUnavailable, MigrationError

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "ChecksumMismatch",
    "Migration",
    "MigrationError",
    "apply_migrations",
    "load_migrations",
    "migrate",
    "migration_status",
    "select_applied_migrations",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Key of the advisory lock serialising migrators: the first 8 bytes of
#: sha256(b"smartpip:schema_migrations") as a signed 64-bit integer. Fixed forever; anything
#: else taking advisory locks in this database must not use it.
MIGRATION_LOCK_KEY = -8_285_772_096_568_105_355

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    """One migration file.

    Attributes:
        version: The number from the file name (``0001`` -> 1).
        name: The description from the file name (``0001_initial.sql`` -> ``initial``).
        sql: The file's text.
        checksum: Hex SHA-256 of the file's bytes.
    """

    version: int
    name: str
    sql: str = attrs.field(repr=False)
    checksum: str

    @property
    def filename(self) -> str:
        """The file name this migration was loaded from."""
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read every ``*.sql`` file of ``directory``, sorted by version.

    Args:
        directory: Where the migration files are.

    Returns:
        The migrations, lowest version first.

    Raises:
        MigrationError: The directory is missing, a ``.sql`` file is misnamed, is not UTF-8, or
            two files share a version.
    """
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None or int(match["version"]) == 0:
            raise MigrationError(
                f"migration file {path.name} is misnamed: expected NNNN_description.sql "
                "with NNNN >= 0001 and a lowercase [a-z0-9_] description"
            )
        version = int(match["version"])
        if version in by_version:
            raise MigrationError(
                f"migrations {by_version[version].filename} and {path.name} share version {version}"
            )
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration file {path.name} is not UTF-8") from exc
        by_version[version] = Migration(
            version=version,
            name=match["name"],
            sql=text,
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [by_version[v] for v in sorted(by_version)]


CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

LOCK_MIGRATIONS = "SELECT pg_advisory_lock(%s)"
UNLOCK_MIGRATIONS = "SELECT pg_advisory_unlock(%s)"
SCHEMA_MIGRATIONS_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"


def apply_migrations(conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> list[int]:
    """Apply the pending migrations, each in its own transaction.

    The connection must not be inside a transaction (a fresh connection, autocommit or not, or
    one whose last transaction ended). It is switched to autocommit for the duration and
    restored afterwards. Use a dedicated connection rather than a pooled one: pooled
    connections carry a ``statement_timeout`` that a long migration or a wait for the lock
    would hit.

    Args:
        conn: A connection to the target database, outside any transaction.
        migrations: All known migrations (``load_migrations()``), in any order.

    Returns:
        The versions applied by this call, ascending; ``[]`` if the schema was up to date.

    Raises:
        ChecksumMismatch: An applied migration's file changed since.
        MigrationError: A migration's SQL failed (that migration is rolled back, earlier ones
            stay applied; the cause is the driver error), or the connection is inside a
            transaction.
        psycopg.OperationalError: The connection broke or the server gave up (retryable).
    """
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise MigrationError("apply_migrations needs a connection outside any transaction")
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_KEY,))
        try:
            applied = _apply_locked(conn, migrations)
        except BaseException:
            # Keep the original error; if the connection broke, the server has already
            # released the lock together with the session.
            with contextlib.suppress(psycopg.Error):
                conn.execute(UNLOCK_MIGRATIONS, (MIGRATION_LOCK_KEY,))
            raise
        conn.execute(UNLOCK_MIGRATIONS, (MIGRATION_LOCK_KEY,))
        return applied
    finally:
        if not conn.closed:
            conn.autocommit = was_autocommit


def _apply_locked(conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> list[int]:
    conn.execute(CREATE_SCHEMA_MIGRATIONS)
    applied = select_applied_migrations(conn)
    _verify_checksums(migrations, applied)
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    INSERT_APPLIED, (migration.version, migration.name, migration.checksum)
                )
        except psycopg.OperationalError:
            raise  # the connection or the server, not the file: retryable
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.filename} failed: {exc}") from exc
        done.append(migration.version)
    return done


def migration_status(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration]
) -> list[Migration]:
    """The migrations not yet applied; cheap enough for a readiness probe.

    Runs inside the caller's transaction (e.g. ``await db.run(migration_status, migrations)``).
    Versions recorded in the database but unknown to ``migrations`` (applied by a newer
    release during a rolling deploy) are ignored.

    Args:
        conn: A connection to the target database.
        migrations: All known migrations.

    Returns:
        The pending migrations, lowest version first; every one of them if
        ``schema_migrations`` does not exist yet.

    Raises:
        ChecksumMismatch: An applied migration's file changed since.
    """
    exists = conn.cursor(row_factory=tuple_row).execute(SCHEMA_MIGRATIONS_EXISTS).fetchone()
    applied = select_applied_migrations(conn) if exists is not None and exists[0] else {}
    _verify_checksums(migrations, applied)
    return sorted((m for m in migrations if m.version not in applied), key=lambda m: m.version)


def select_applied_migrations(conn: psycopg.Connection[Any]) -> dict[int, str]:
    """Map every applied version to its recorded checksum (the table must exist)."""
    rows = conn.cursor(row_factory=tuple_row).execute(SELECT_APPLIED).fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def _verify_checksums(migrations: Sequence[Migration], applied: dict[int, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise ChecksumMismatch(
                f"migration {migration.filename} was changed after it was applied "
                f"(checksum {migration.checksum} != {recorded}); "
                "restore the file or write a new migration"
            )


def migrate(
    url: str,
    migrations: Sequence[Migration] | None = None,
    *,
    connect_timeout: float = 5.0,
) -> list[int]:
    """Apply the pending migrations over a dedicated connection (sync; run it in a thread).

    The connection gets no ``statement_timeout`` (unless the URL sets one) and is closed
    afterwards. Typical startup: ``ensure_database(url)``, then ``migrate(url)``.

    Args:
        url: libpq URL or conninfo string of the target database.
        migrations: What to apply; ``load_migrations()`` when omitted.
        connect_timeout: Seconds to connect (whole seconds, at least 2).

    Returns:
        The versions applied, ascending.

    Raises:
        DatabaseUnavailable: Postgres cannot be reached or the connection broke (retryable).
        ChecksumMismatch: An applied migration's file changed since.
        MigrationError: The migration files are invalid or a migration's SQL failed.
    """
    if migrations is None:
        migrations = load_migrations()
    try:
        with psycopg.connect(
            url,
            connect_timeout=max(2, math.ceil(connect_timeout)),
            application_name="smartpip-migrate",
        ) as conn:
            return apply_migrations(conn, migrations)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot migrate: Postgres unavailable: {exc}") from exc
