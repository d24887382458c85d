"""The store's exceptions, drawn once.

Driver errors (psycopg, psycopg_pool, coredis, socket errors) never leave ``store``: the ones
that mean "the dependency is not answering" become one of these, chained to the original with
``raise ... from``. Errors that mean "your data or query is wrong" (e.g. ``psycopg.IntegrityError``)
propagate unchanged for the caller to handle.

::

    Exception
    ├── DatabaseUnavailable     Postgres unreachable, broken, saturated or too slow
    ├── RedisUnavailable        Redis unreachable, broken or too slow
    ├── FencedOut               a job's write carried a stale fencing token (store.jobs)
    ├── BackupError             a backup step failed (store.backup_*); one line for operators
    │   ├── BackupToolError     pg_dump / pg_restore missing, or older than the server
    │   ├── StorageError        the bucket is missing, the credentials are refused, S3 failed
    │   ├── DumpFailed          pg_dump exited non-zero or was terminated: nothing was kept
    │   └── VerifyFailed        a backup's checksum, pg_restore read or row counts disagree
    └── MigrationError          the schema cannot be brought up to date
        └── ChecksumMismatch    an applied migration file was edited afterwards

Each is importable from the module that raises it (``store.postgres``, ``store.redis``,
``store.migrations``) as well as from here.
"""

from __future__ import annotations

__all__ = [
    "BackupError",
    "BackupToolError",
    "ChecksumMismatch",
    "DatabaseUnavailable",
    "DumpFailed",
    "FencedOut",
    "MigrationError",
    "RedisUnavailable",
    "StorageError",
    "VerifyFailed",
]


class DatabaseUnavailable(Exception):
    """Postgres could not be reached or did not answer in time.

    Transient by nature: the HTTP layer answers 503 with ``Retry-After``. When raised because a
    deadline passed, the transaction's outcome is unknown (the abandoned worker thread may still
    commit), so writes behind it should be idempotent.
    """


class RedisUnavailable(Exception):
    """Redis could not be reached, dropped the connection, or did not answer in time."""


class FencedOut(Exception):
    """A scheduled job's write carried a fencing token that is no longer the period's.

    Another replica took the period over (the caller's lease lapsed while it was paused or
    cut off): the write was refused and nothing was written.
    """


class BackupError(Exception):
    """A backup, verification, drill or restore step failed; the message is one line."""


class BackupToolError(BackupError):
    """``pg_dump`` or ``pg_restore`` cannot be run, or is older than the server."""


class StorageError(BackupError):
    """The backup bucket cannot be used: missing, credentials refused, or S3 failed."""


class DumpFailed(BackupError):
    """``pg_dump`` exited non-zero or was terminated; the upload was aborted."""


class VerifyFailed(BackupError):
    """A stored backup does not check out: checksum, a full ``pg_restore`` read, row counts."""


class MigrationError(Exception):
    """The database schema cannot be brought up to date; startup must stop."""


class ChecksumMismatch(MigrationError):
    """A migration file changed after it was applied to this database."""
