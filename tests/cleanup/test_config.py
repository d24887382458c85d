"""The cleanup job's configuration: defaults, overrides, bounds, and the policy built from it."""

from __future__ import annotations

import pytest

from smartpip.config import Config, ConfigError
from smartpip.runtime.jobs import cleanup_policy
from tasks.cleanup import CleanupPolicy


def test_defaults() -> None:
    policy = cleanup_policy(Config.from_env({}))
    assert policy == CleanupPolicy(
        session_retention_days=30, audit_retention_days=90, batch_size=1000, max_batches=100
    )


def test_overrides_reach_the_policy() -> None:
    config = Config.from_env(
        {
            "SMARTPIP_SESSION_RETENTION_DAYS": "7",
            "SMARTPIP_AUDIT_RETENTION_DAYS": "365",
            "SMARTPIP_CLEANUP_BATCH_SIZE": "250",
            "SMARTPIP_CLEANUP_MAX_BATCHES": "4",
        }
    )
    policy = cleanup_policy(config)
    assert (policy.session_retention_days, policy.audit_retention_days) == (7, 365)
    assert (policy.batch_size, policy.max_batches) == (250, 4)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSION_RETENTION_DAYS", "0"),
        ("SESSION_RETENTION_DAYS", "3651"),
        ("AUDIT_RETENTION_DAYS", "0"),
        ("AUDIT_RETENTION_DAYS", "ninety"),
        ("CLEANUP_BATCH_SIZE", "0"),
        ("CLEANUP_BATCH_SIZE", "100001"),
        ("CLEANUP_MAX_BATCHES", "0"),
        ("CLEANUP_MAX_BATCHES", "1.5"),
    ],
)
def test_out_of_bounds_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({f"SMARTPIP_{name}": value})
    assert [p.split(" ")[0] for p in caught.value.problems] == [f"SMARTPIP_{name}"]


def test_pausing_and_rescheduling_the_cleanup() -> None:
    config = Config.from_env(
        {"SMARTPIP_JOBS_PAUSED": "cleanup", "SMARTPIP_JOBS_SCHEDULE": "cleanup=every 30m"}
    )
    assert config.jobs_paused == ("cleanup",)
    assert [(name, s.describe()) for name, s in config.jobs_schedule] == [
        ("cleanup", "every 1800s")
    ]
