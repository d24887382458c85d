"""Log formats: JSON lines by default (what log shipping parses), human-readable console
lines with ``SMARTPIP_LOG_FORMAT=console``; the same events and fields either way."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from smartpip.config import Config, ConfigError
from smartpip.logs import access_logger, bind_request_id, configure_logging, get_logger


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back what tests.logguard set up: its JSON handler on the session's stderr (a new
    one made now could be bound to this test's captured stream, closed after the test)."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    configure_logging("info")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)


def test_the_format_is_configured_and_checked() -> None:
    assert Config.from_env({}).log_format == "json"
    assert Config.from_env({"SMARTPIP_LOG_FORMAT": "console"}).log_format == "console"
    with pytest.raises(ConfigError, match="SMARTPIP_LOG_FORMAT"):
        Config.from_env({"SMARTPIP_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("info", "xml")


def test_json_lines_keep_their_shape(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    del restore_logging
    configure_logging("info", "json")
    bind_request_id("req-1")
    get_logger("smartpip.test").warning("something happened", job="cleanup", rows=3)
    logging.getLogger("hypercorn.error").info("a library line")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    ours, library = lines
    assert ours["event"] == "something happened"
    assert (ours["level"], ours["logger"], ours["request_id"]) == (
        "warning",
        "smartpip.test",
        "req-1",
    )
    assert (ours["job"], ours["rows"]) == ("cleanup", 3)
    assert ours["timestamp"].endswith("Z")
    assert (library["event"], library["logger"], library["level"]) == (
        "a library line",
        "hypercorn.error",
        "info",
    )


def test_console_lines_are_for_people(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    del restore_logging
    configure_logging("info", "console")
    bind_request_id("req-2")
    get_logger("smartpip.test").warning("something happened", job="cleanup")
    access_logger("info", "console").info("request", route="/v1/history", status=200)
    ours, access = capsys.readouterr().err.splitlines()
    for line in (ours, access):
        assert not line.startswith("{")
        assert "request_id=req-2" in line
    assert "something happened" in ours and "job=cleanup" in ours and "warning" in ours
    assert "route=/v1/history" in access and "status=200" in access
