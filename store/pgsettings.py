"""How to reach Postgres and how long to wait for it: ``PostgresSettings`` and the connection
parameters every connection gets (the pool's and the probe's)."""

from __future__ import annotations

import math
from typing import Any

import attrs
from psycopg.conninfo import conninfo_to_dict

__all__ = ["APPLICATION_NAME", "PostgresSettings", "connection_kwargs", "libpq_seconds"]

APPLICATION_NAME = "smartpip"

# TCP keepalives: an idle pooled connection to a vanished host is noticed after about
# 10 + 3 * 5 = 25 s instead of the kernel default of two hours.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# Data left unacknowledged this long (host gone mid-query) aborts the connection, so a worker
# thread abandoned after a deadline does not stay blocked for the ~15 min of TCP retransmission.
_TCP_USER_TIMEOUT_MS = 30_000


@attrs.frozen
class PostgresSettings:
    """How to reach Postgres and how long to wait for it.

    Attributes:
        url: libpq URL or conninfo string, e.g. ``postgresql://user@host:5432/smartpip``.
        min_size: Connections the pool keeps open.
        max_size: Most connections the pool opens; also the number of worker threads.
        connect_timeout: Seconds to establish a connection (libpq counts whole seconds with a
            minimum of 2, so this is rounded up).
        queue_timeout: Seconds a call waits for its turn (a worker slot) while every slot is
            busy. A healthy database frees slots every few milliseconds, so this bounds how
            large a burst may queue before calls are shed with ``DatabaseUnavailable``; a
            dead or hung database is caught by the probe instead (see ``Database``).
        acquire_timeout: Seconds a call that has its worker slot waits for the pool to hand
            it a working connection. There are as many connections as slots, so this is
            normally immediate; it lasts only while the pool opens or replaces connections,
            so it is short: it is how long an unnoticed dead database holds a request.
        statement_timeout_ms: Server-side limit for each statement, set on every connection
            (0: none). Keep it below ``query_timeout`` so that the server cancels a slow
            statement (clean rollback) before the client gives up on it (outcome unknown).
        query_timeout: Seconds a call may run once it has its connection (its deadline, set
            when it gets its worker slot, is ``acquire_timeout`` plus this).
        probe_timeout: Seconds a probe (``Database.probe``) waits for Postgres, connecting
            included, before Postgres is declared down.
        recheck_after: A connection back in the pool for less than this many seconds is
            handed out without the liveness check (an extra round trip). 0 checks every time.

    Raises:
        ValueError: A size or timeout is out of range.
    """

    url: str
    min_size: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    max_size: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    connect_timeout: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    # Why 5 s: 50 concurrent writers of one user waited at most 0.46 s for a slot on this
    # kind of machine (measured with bench/dbload.py; 400 waited seconds and got 503s after
    # the old 1 s); 5 s absorbs ten times the former, and a dead or hung database is not
    # waited for this long because the probe marks it down (see Database).
    queue_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    # Why 1 s: opening a connection takes milliseconds; waiting longer than this for one means
    # Postgres refuses or ignores connections, and the probe will soon say so.
    acquire_timeout: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    statement_timeout_ms: int = attrs.field(default=5000, validator=attrs.validators.ge(0))
    query_timeout: float = attrs.field(default=6.0, validator=attrs.validators.gt(0))
    # Why 1 s: the probe's trivial query on its own connection never queues behind requests;
    # with 400 concurrent writers saturating the pool it answered within 160 ms (p99 33 ms,
    # measured), so a second without an answer means the server is not answering. A false
    # "down" would fail every request until the next probe, hence the wide margin.
    probe_timeout: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    # Why 1 s: under load every connection is reused within milliseconds, so the check (about
    # 70 µs of this process's CPU per call, measured) would run on every request for nothing;
    # after a Postgres restart, a connection used within the last second fails its next call
    # once (503) and is replaced, while idler ones are checked and replaced silently.
    recheck_after: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} > max_size {self.max_size}")


def libpq_seconds(timeout: float) -> int:
    return max(2, math.ceil(timeout))


def connection_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    """The connection parameters every pooled connection gets on top of ``settings.url``.

    ``options`` given in the URL are kept; the statement timeout is appended to them.
    """
    url_options = conninfo_to_dict(settings.url).get("options")
    options = f"-c statement_timeout={settings.statement_timeout_ms}"
    return {
        "application_name": APPLICATION_NAME,
        "connect_timeout": libpq_seconds(settings.connect_timeout),
        "options": f"{url_options} {options}" if url_options else options,
        "tcp_user_timeout": _TCP_USER_TIMEOUT_MS,
        **_KEEPALIVES,
        # Transactions are opened explicitly by Database.run (conn.transaction()).
        "autocommit": True,
    }
