"""pytest plugin: the service's JSON logging in every test, and no unexpected ERROR log.

A test that provokes an error on purpose asserts on it and then calls ``caplog.clear()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from smartpip.logs import configure_logging


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("info")


@pytest.fixture(autouse=True)
def no_unexpected_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if anything logged at ERROR or above that the test did not clear."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail(
            "unexpected ERROR logs:\n" + "\n".join(f"{r.name}: {r.getMessage()}" for r in errors)
        )
