"""Bringing a database up to date at startup: create it when missing, then migrate it."""

from __future__ import annotations

from store.migrations import migrate
from store.postgres import ensure_database

__all__ = ["migrate_database"]


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
