"""An outage is logged once in a while, not once per refused request."""

from __future__ import annotations

import logging

import pytest

from smartpip.http.app import OUTAGE_LOG_SECONDS, _OutageLog
from tests.support.clock import FakeClock


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The structured events logged at WARNING (structlog hands the logging module dicts)."""
    return [
        r.msg for r in caplog.records if r.levelno == logging.WARNING and isinstance(r.msg, dict)
    ]


def test_one_warning_per_dependency_per_interval_with_the_count_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(start=1000.0)
    outage = _OutageLog(clock)
    for _ in range(500):
        outage.warn("postgres", "Postgres is down")
    outage.warn("redis", "timeout")
    assert len(lines(caplog)) == 2  # one each, though 500 requests failed on Postgres
    clock.advance(OUTAGE_LOG_SECONDS)
    outage.warn("postgres", "Postgres is down")
    logged = lines(caplog)
    assert len(logged) == 3
    assert logged[-1]["dependency"] == "postgres"
    assert logged[-1]["refused_since_last_line"] == 499
