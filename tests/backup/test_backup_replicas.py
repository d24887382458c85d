"""Two real replicas (``smartpip serve`` processes) make one backup for the night."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
import trio

from store.backup_s3 import S3Settings
from tests.backup.conftest import object_keys
from tests.conftest import REDIS_URL
from tests.support.polling import wait_until
from tests.test_serve import free_port

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(120)]

BACKUP_RUNS = "SELECT state, attempts, holder FROM job_runs WHERE job = 'backup'"


def _serve(name: str, env: dict[str, str], log: Path, stack: ExitStack) -> subprocess.Popen[bytes]:
    handle = stack.enter_context(log.open("w"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartpip.cli", "serve"],
        env={**env, "SMARTPIP_REPLICA_NAME": name, "SMARTPIP_BIND": f"127.0.0.1:{free_port()}"},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    return proc


@pytest.fixture
def replica_env(sample_db: str, s3_settings: S3Settings, redis_prefix: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SMARTPIP_DATABASE_URL": sample_db,
        "SMARTPIP_REDIS_URL": REDIS_URL,
        "SMARTPIP_REDIS_PREFIX": redis_prefix,
        "SMARTPIP_DRAIN_SECONDS": "0",
        "SMARTPIP_JOB_LEASE_SECONDS": "6",
        "SMARTPIP_BACKUP_S3_BUCKET": s3_settings.bucket,
        "SMARTPIP_BACKUP_S3_ENDPOINT_URL": str(s3_settings.endpoint_url),
        "SMARTPIP_BACKUP_S3_REGION": "us-east-1",
        "SMARTPIP_BACKUP_S3_ACCESS_KEY_ID": str(s3_settings.access_key_id),
        "SMARTPIP_BACKUP_S3_SECRET_ACCESS_KEY": str(s3_settings.secret_access_key),
    }


def _runs(url: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(row) for row in conn.execute(BACKUP_RUNS).fetchall()]


async def test_two_replicas_make_one_backup_for_the_night(
    replica_env: dict[str, str], sample_db: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    # Started after tonight's 03:30 UTC, each replica claims the current night at once.
    with ExitStack() as stack:
        procs = [
            _serve(name, replica_env, tmp_path / f"{name}.log", stack)
            for name in ("replica-a", "replica-b")
        ]

        def done() -> bool:
            for proc, name in zip(procs, ("a", "b"), strict=True):
                if proc.poll() is not None:
                    raise AssertionError(f"replica-{name} exited: {proc.returncode}")
            return [state for state, _, _ in _runs(sample_db)] == ["succeeded"]

        with trio.fail_after(90):
            await wait_until(done, interval=0.2)

    [(state, attempts, holder)] = _runs(sample_db)
    assert (state, attempts) == ("succeeded", 1)
    assert holder in ("replica-a", "replica-b")
    dumps = [k for k in object_keys(s3_settings) if k.endswith(".dump")]
    manifests = [k for k in object_keys(s3_settings) if k.endswith(".manifest.json")]
    assert len(dumps) == len(manifests) == 1
