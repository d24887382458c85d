"""Which configured Redis timeout ended a wait, read from the error rather than the clock.

A test that freezes Redis (a ``"hung"`` fault proxy) leaves nothing but a timeout to end the
wait; instead of timing the wait, it checks that the error names one of the store's own
timeouts: coredis' reply timeout (``command_timeout``, "PING timed out after 0.25 seconds") or
``RedisStore.fail_fast``'s backstop ("did not answer within 0.75 s"). A generous hang guard
(pytest-timeout, or a ``fail_after`` several times larger) still turns a hang into a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from store.redis import RedisSettings

__all__ = ["backoff_errors", "ended_by_a_timeout"]


def ended_by_a_timeout(error: str, settings: RedisSettings) -> bool:
    """Whether ``error`` says one of the timeouts of ``settings`` ended the wait."""
    backstop = settings.connect_timeout + settings.command_timeout
    return (
        f"timed out after {settings.command_timeout} seconds" in error
        or f"did not answer within {backstop} s" in error
    )


def backoff_errors(records: Iterable[logging.LogRecord]) -> list[str]:
    """The errors ``store.backoff`` logged as Redis went down (one warning per outage)."""
    return [
        str(record.msg["error"])
        for record in records
        if record.name == "store.backoff" and isinstance(record.msg, dict) and "error" in record.msg
    ]
