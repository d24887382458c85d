"""``pg_restore`` for backups: a full read of a dump, a restore, scratch databases, row counts.

Synchronous and blocking like :mod:`store.backup_pg` (whose :class:`~store.backup_pg.Cancel`
stops ``pg_restore`` too): the dump is fed to ``pg_restore``'s standard input as it is
downloaded, hashed on the way, never written to disk.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterable
from contextlib import suppress

import psycopg
from psycopg import sql

from store.backup_pg import (
    Cancel,
    PgTools,
    count_rows,
    reap,
    split_password,
    stderr_tail,
    url_for_database,
)
from store.errors import BackupError, BackupToolError, VerifyFailed

__all__ = [
    "create_database",
    "database_exists",
    "drop_database",
    "restore_stream",
    "table_counts",
]


def restore_stream(
    tools: PgTools,
    chunks: Iterable[bytes],
    cancel: Cancel,
    *,
    into: str | None = None,
    clean: bool = False,
) -> tuple[str, int]:
    """Feed a custom-format dump to ``pg_restore``, hashing it on the way.

    Args:
        tools: The programs.
        chunks: The dump's bytes.
        cancel: Terminates pg_restore when cancelled.
        into: A database URL to restore into; None reads every block and writes the SQL
            to ``/dev/null`` (the full check that ``pg_restore --list`` is not).
        clean: Drop the database's objects before recreating them (restore over a database).

    Returns:
        The SHA-256 (hex) and size of what was fed.

    Raises:
        VerifyFailed: pg_restore failed (a truncated or corrupted dump, or a failed restore).
        BackupToolError: pg_restore cannot be started.
    """
    env = dict(os.environ)
    args = [tools.pg_restore, "--exit-on-error", "--no-password"]
    if into is None:
        args.append("--file=/dev/null")
    else:
        dsn, env = split_password(into)
        args += ["--no-owner", "--no-privileges", f"--dbname={dsn}"]
        if clean:
            args += ["--clean", "--if-exists"]
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
        except OSError as error:
            raise BackupToolError(f"cannot start {tools.pg_restore}: {error}") from error
        cancel.register(proc)
        assert proc.stdin is not None
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped reading: its status says why
        finally:
            with suppress(BrokenPipeError):
                proc.stdin.close()
            status = reap(proc)
        if cancel.cancelled:
            raise BackupError("cancelled; pg_restore was stopped")
        if status != 0:
            raise VerifyFailed(f"pg_restore exited with status {status}: {stderr_tail(stderr)}")
    return digest.hexdigest(), size


def _admin_url(url: str) -> str:
    return url_for_database(url, "postgres")


DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"


def database_exists(url: str, dbname: str) -> bool:
    """Whether ``dbname`` exists on the server of ``url``."""
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        return conn.execute(DATABASE_EXISTS, (dbname,)).fetchone() is not None


def create_database(url: str, dbname: str) -> None:
    """Create the empty database ``dbname`` on the server of ``url`` (the role needs CREATEDB).

    Raises:
        BackupError: it exists already, or the role may not create databases.
    """
    try:
        with psycopg.connect(_admin_url(url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.Error as error:
        raise BackupError(f"cannot create database {dbname}: {error}".splitlines()[0]) from error


def drop_database(url: str, dbname: str) -> None:
    """Drop ``dbname`` if it exists, disconnecting its sessions."""
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def table_counts(url: str) -> dict[str, int]:
    """Every user table's exact row count in the database of ``url``."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return count_rows(conn)
