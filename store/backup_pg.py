"""``pg_dump`` for backups: the client programs' versions, the snapshot, the dump stream.

Synchronous and blocking, like :mod:`store.backup_s3`: the backup pipeline runs in one worker
thread. The rules this module keeps:

- **One snapshot.** :func:`exported_snapshot` opens its own connection, starts a REPEATABLE
  READ transaction, exports its snapshot (``pg_export_snapshot()``) and counts every table's
  rows exactly in it; ``pg_dump --snapshot`` then dumps that same snapshot, so the counts in
  the manifest are the counts of the dump. The transaction stays open until the dump ends
  (an exported snapshot lives only as long as its transaction).
- **A failed dump is never a complete stream.** :class:`DumpReader` is what the uploader
  reads: at the end of the stream it waits for ``pg_dump`` and raises
  :class:`~store.errors.DumpFailed` if it exited non-zero (or was terminated), so the upload
  fails instead of completing a truncated object. A plain pipe would simply end.
- **Cancellation.** A :class:`Cancel` is shared with the async side: cancelling terminates
  every process registered with it (the dump ends, the reader raises) and stops downloads.
- Passwords are passed to the tools through ``PGPASSWORD``, never on their command line.

``pg_restore`` and the scratch databases are in :mod:`store.backup_restore`.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store.errors import BackupError, BackupToolError, DumpFailed

__all__ = [
    "Cancel",
    "DumpReader",
    "PgTools",
    "Snapshot",
    "check_tools",
    "count_rows",
    "database_name",
    "exported_snapshot",
    "reap",
    "split_password",
    "start_dump",
    "stderr_tail",
    "url_for_database",
]

# Why 2,000: enough of a tool's stderr to name the failure, small enough for a log line.
STDERR_TAIL = 2000
# Why 30 s: ``--version`` answers at once; anything slower is a broken install.
VERSION_TIMEOUT = 30.0
# Why 10 s: a terminated pg_dump or pg_restore exits at once; one that does not is killed.
TERMINATE_GRACE = 10.0


@attrs.frozen
class PgTools:
    """The client programs to run (paths or names on ``PATH``)."""

    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"


class Cancel:
    """A cancellation shared between the async caller and the worker thread.

    Concurrency: :meth:`cancel` may be called from any thread; it sets the flag first, then
    terminates the processes registered so far; a process registered after it is terminated
    at once by :meth:`register`.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def register(self, proc: subprocess.Popen[bytes]) -> None:
        """Terminate ``proc`` when cancelled (at once if already)."""
        with self._lock:
            self._procs.append(proc)
        if self.cancelled:
            _terminate(proc)

    def cancel(self) -> None:
        """Stop the work: terminate every registered process."""
        self._event.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()


def split_password(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its password, and the environment that carries it."""
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None}), env


def database_name(url: str) -> str:
    """The database ``url`` names (``dbname``, else the user name, as libpq does)."""
    params = conninfo_to_dict(url)
    return str(params.get("dbname") or params.get("user") or "postgres")


def url_for_database(url: str, dbname: str) -> str:
    """``url`` with its database replaced by ``dbname``."""
    return make_conninfo(url, dbname=dbname)


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def _tool_version(path: str, name: str) -> tuple[int, str]:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, timeout=VERSION_TIMEOUT, check=False
        )
    except (FileNotFoundError, PermissionError) as error:
        raise BackupToolError(
            f"{name} not found or not executable at {path!r}: install the PostgreSQL client "
            f"programs matching the server, or set SMARTPIP_BACKUP_{name.upper()}"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise BackupToolError(f"{path} --version did not answer") from error
    text = out.stdout.decode(errors="replace").strip()
    match = _VERSION.search(text)
    if out.returncode != 0 or match is None:
        raise BackupToolError(f"{path} --version did not print a PostgreSQL version: {text!r}")
    return int(match[1]), text


SERVER_VERSION = "SELECT current_setting('server_version_num')::int"


def check_tools(tools: PgTools, url: str) -> tuple[str, int]:
    """Check that both tools run and are not older than the server.

    Returns:
        ``pg_dump --version``'s line and the server's version number (e.g. 150020).

    Raises:
        BackupToolError: a tool is missing, broken, or of an older major version.
        BackupError: the database cannot be reached.
    """
    server = _server_version(url)
    server_major = server // 10_000
    dump_major, dump_text = _tool_version(tools.pg_dump, "pg_dump")
    restore_major, _ = _tool_version(tools.pg_restore, "pg_restore")
    for name, major in (("pg_dump", dump_major), ("pg_restore", restore_major)):
        if major < server_major:
            raise BackupToolError(
                f"{name} {major} is older than the server (PostgreSQL {server_major}): "
                f"install postgresql-client-{server_major}"
            )
    return dump_text, server


def _server_version(url: str) -> int:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(SERVER_VERSION).fetchone()
    except psycopg.Error as error:
        raise BackupError(f"cannot reach the database: {error}".splitlines()[0]) from error
    assert row is not None
    return int(row[0])


LIST_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


def count_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The exact row count of every user table (``schema.table``), in the current snapshot."""
    counts: dict[str, int] = {}
    for schema, table in conn.execute(LIST_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row is not None else 0
    return counts


@attrs.frozen
class Snapshot:
    """An exported snapshot (kept alive by its open transaction) and its row counts."""

    snapshot_id: str
    row_counts: dict[str, int]


EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"


@contextmanager
def exported_snapshot(url: str) -> Iterator[Snapshot]:
    """Export a snapshot and count the rows in it; the snapshot lives until the block exits.

    Raises:
        BackupError: the database cannot be reached or the counting failed.
    """
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as error:
        raise BackupError(f"cannot reach the database: {error}".splitlines()[0]) from error
    with conn:
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute(EXPORT_SNAPSHOT).fetchone()
            assert row is not None
            snapshot = Snapshot(str(row[0]), count_rows(conn))
        except psycopg.Error as error:
            raise BackupError(f"cannot export a snapshot: {error}".splitlines()[0]) from error
        yield snapshot
        conn.execute("ROLLBACK")


def start_dump(tools: PgTools, url: str, snapshot_id: str, cancel: Cancel) -> DumpReader:
    """Start ``pg_dump -Fc`` of the snapshot; read the dump from the returned reader.

    Raises:
        BackupToolError: pg_dump cannot be started.
    """
    dsn, env = split_password(url)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (the DumpReader owns and closes it)
    args = [tools.pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot_id}"]
    try:
        proc = subprocess.Popen(
            [*args, f"--dbname={dsn}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    except OSError as error:
        stderr.close()
        raise BackupToolError(f"cannot start {tools.pg_dump}: {error}") from error
    cancel.register(proc)
    return DumpReader(proc, stderr, cancel)


def stderr_tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    text = stderr.read().decode(errors="replace").strip()
    return " ".join(text[-STDERR_TAIL:].split()) or "(no message)"


def reap(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class DumpReader:
    """pg_dump's output as a file-like object for the uploader, hashed as it is read.

    ``read`` raises :class:`DumpFailed` at the end of the stream (a short read) when pg_dump
    exited non-zero or was terminated: the uploader then aborts instead of completing.
    """

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], cancel: Cancel) -> None:
        assert proc.stdout is not None
        self._proc = proc
        self._stdout = proc.stdout
        self._stderr = stderr
        self._cancel = cancel
        self._hash = hashlib.sha256()
        self.size = 0
        self.ended = False

    @property
    def sha256(self) -> str:
        """The SHA-256 (hex) of everything read so far."""
        return self._hash.hexdigest()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); b"" at the end.

        Raises:
            DumpFailed: the stream ended and pg_dump did not succeed, or it was cancelled.
        """
        if self.ended:
            return b""
        data = self._stdout.read() if size is None or size < 0 else self._stdout.read(size)
        self._hash.update(data)
        self.size += len(data)
        if size is None or size < 0 or len(data) < size:
            self._finish()
        return data

    def _finish(self) -> None:
        status = reap(self._proc)
        self.ended = True
        if self._cancel.cancelled:
            raise DumpFailed("the backup was cancelled; pg_dump was terminated")
        if status != 0:
            raise DumpFailed(f"pg_dump exited with status {status}: {stderr_tail(self._stderr)}")

    def close(self) -> None:
        """Stop pg_dump if it still runs and release its pipes."""
        if self._proc.poll() is None:
            self._proc.terminate()
        reap(self._proc)
        self._stdout.close()
        self._stderr.close()
