"""Bringing a database up to date at startup: create it when missing, then migrate it."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store.errors import DatabaseUnavailable, MigrationError
from store.migrations import migrate
from store.postgres import libpq_seconds

__all__ = ["ensure_database", "migrate_database"]


def migrate_database(url: str, *, connect_timeout: float = 5.0) -> list[int]:
    """Create the database named by ``url`` if missing and apply pending migrations (sync).

    Run it in a thread (``trio.to_thread.run_sync``); it uses its own short-lived connections,
    not the pool.

    Args:
        url: libpq URL or conninfo string of the target database.
        connect_timeout: Seconds for each connection attempt (whole seconds, at least 2).

    Returns:
        The versions applied now (empty when the schema was already current).

    Raises:
        DatabaseUnavailable: Postgres cannot be reached.
        MigrationError: The database cannot be created, or a migration is invalid, failed,
            or was edited after being applied (``ChecksumMismatch``).
    """
    ensure_database(url, connect_timeout=connect_timeout)
    return migrate(url, connect_timeout=connect_timeout)


DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"
MAINTENANCE_DB = "postgres"


def ensure_database(url: str, *, connect_timeout: float = 5.0) -> bool:
    """Create the database named by ``url`` if it does not exist (sync; run it in a thread).

    Connects to the ``postgres`` maintenance database of the same server with the same
    credentials to check and create. Safe against a concurrent creator (another replica).

    Args:
        url: libpq URL or conninfo string of the target database; it must name the database.
        connect_timeout: Seconds for each connection attempt (whole seconds, at least 2).

    Returns:
        True if this call created the database, False if it already existed.

    Raises:
        MigrationError: The URL names no database, or the role may not create it.
        DatabaseUnavailable: The server cannot be reached, or the database exists but refuses
            the connection.
    """
    params = conninfo_to_dict(url)
    dbname = str(params.get("dbname") or "")
    if not dbname:
        raise MigrationError(f"the database URL names no database: {_redacted(url)}")
    timeout = libpq_seconds(connect_timeout)
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True):
            return False
    except psycopg.OperationalError as exc:
        target_error = exc
    try:
        with psycopg.connect(
            make_conninfo(url, dbname=MAINTENANCE_DB, connect_timeout=timeout), autocommit=True
        ) as conn:
            if conn.execute(DATABASE_EXISTS, (dbname,)).fetchone() is not None:
                raise DatabaseUnavailable(
                    f"database {dbname!r} exists but refused the connection: {target_error}"
                ) from target_error
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
    except pg_errors.DuplicateDatabase:
        return False
    except pg_errors.InsufficientPrivilege as exc:
        role = params.get("user") or "(default user)"
        raise MigrationError(
            f"database {dbname!r} does not exist and role {role!r} may not create it: "
            f"create it once by hand (CREATE DATABASE {dbname}) or grant the role CREATEDB"
        ) from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach Postgres to create database {dbname!r}: {exc}"
        ) from exc


def _redacted(url: str) -> str:
    """The URL's non-secret parts, for messages."""
    params = conninfo_to_dict(url)
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})
