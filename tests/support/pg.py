"""Scratch databases on the shared test Postgres server (created and dropped by the tests)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "create_database",
    "drop_database",
    "unique_database_url",
    "url_with",
    "wait_until_blocked",
]


def url_with(url: str, **params: str) -> str:
    """``url`` (a URL or conninfo string) with some connection parameters replaced."""
    return make_conninfo(url, **params)


def unique_database_url(url: str, stem: str = "smartpip_scratch") -> str:
    """A conninfo for a database that does not exist yet, on the server of ``url``."""
    return url_with(url, dbname=f"{stem}_{uuid.uuid4().hex[:12]}")


def _admin(url: str) -> tuple[str, str]:
    dbname = str(conninfo_to_dict(url)["dbname"])
    return url_with(url, dbname="postgres"), dbname


def create_database(url: str) -> None:
    """Create the (empty) database named by ``url``, connecting as the same role."""
    admin, dbname = _admin(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop_database(url: str) -> None:
    """Drop the database named by ``url`` if it exists, disconnecting its sessions."""
    admin, dbname = _admin(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def wait_until_blocked(observer: psycopg.Connection[Any], pid: int) -> None:
    """Poll until backend ``pid`` waits on a lock (bounded)."""
    deadline = time.monotonic() + 5
    query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
    while time.monotonic() < deadline:
        row = observer.execute(query, (pid,)).fetchone()
        if row is not None and row[0] == "Lock":
            return
        time.sleep(0.01)
    raise AssertionError("the second transaction never waited for the lock")
