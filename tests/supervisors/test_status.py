"""Tests for StatusRegistry and its JSON snapshot."""

from __future__ import annotations

import datetime
import json

import pytest

from supervisors import ChildState, StatusRegistry

FIELDS = {
    "supervisor",
    "state",
    "restarts",
    "last_error",
    "last_error_at",
    "last_success_at",
    "next_run_at",
    "leader",
}


def fixed_clock() -> float:
    return 1_700_000_000.25


def test_register_and_snapshot_are_sorted_and_json_ready() -> None:
    registry = StatusRegistry(wall_clock=fixed_clock)
    registry.register("zeta", "jobs")
    registry.register("alpha", "monitors")
    registry.mark_success("alpha")
    registry.set_next_run("alpha", 60.0)
    registry.set_leader("alpha", True)
    registry.record_restart("zeta", "ValueError: boom", 2.0)

    snapshot = registry.snapshot()

    assert list(snapshot) == ["alpha", "zeta"]
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["alpha"] == {
        "supervisor": "monitors",
        "state": "starting",
        "restarts": 0,
        "last_error": None,
        "last_error_at": None,
        "last_success_at": "2023-11-14T22:13:20.250Z",
        "next_run_at": "2023-11-14T22:14:20.250Z",
        "leader": True,
    }
    zeta = snapshot["zeta"]
    assert set(zeta) == FIELDS
    assert zeta["state"] == "backoff"
    assert zeta["restarts"] == 1
    assert zeta["last_error"] == "ValueError: boom"
    assert isinstance(zeta["last_error_at"], str)
    parsed = datetime.datetime.fromisoformat(zeta["last_error_at"])
    assert parsed.utcoffset() == datetime.timedelta(0)


def test_register_conflict_and_reregistration() -> None:
    registry = StatusRegistry(wall_clock=fixed_clock)
    registry.register("job", "jobs")
    registry.record_failure("job", "Boom: x")
    with pytest.raises(ValueError, match="already belongs"):
        registry.register("job", "other")

    status = registry.register("job", "jobs")  # the owning supervisor started again

    assert status.state is ChildState.STARTING
    assert status.last_error == "Boom: x"  # history is kept


def test_errors_are_truncated() -> None:
    registry = StatusRegistry(wall_clock=fixed_clock)
    registry.register("job", "jobs")
    registry.record_error("job", "x" * 2000)
    assert registry.get("job").last_error == "x" * 500


def test_unknown_name_raises_key_error() -> None:
    registry = StatusRegistry()
    with pytest.raises(KeyError):
        registry.mark_success("nope")
