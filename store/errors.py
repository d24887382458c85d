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
    └── MigrationError          the schema cannot be brought up to date
        └── ChecksumMismatch    an applied migration file was edited afterwards

Each is importable from the module that raises it (``store.postgres``, ``store.redis``,
``store.migrations``) as well as from here.
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatch",
    "DatabaseUnavailable",
    "FencedOut",
    "MigrationError",
    "RedisUnavailable",
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


class MigrationError(Exception):
    """The database schema cannot be brought up to date; startup must stop."""


class ChecksumMismatch(MigrationError):
    """A migration file changed after it was applied to this database."""
