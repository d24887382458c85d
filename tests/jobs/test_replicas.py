"""Scheduled jobs across real replicas: several processes on the real Postgres and Redis.

Each replica is the real service (``tests.jobs.replica``: ``smartpip.runtime.main.main`` with
two probe jobs beside the service's own). The tests read what happened from the replicas'
JSON logs and from Postgres, never from timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL
from tests.support.polling import eventually
from tests.test_serve import free_port

pytestmark = pytest.mark.subprocess

PROBE_TABLE = """
CREATE TABLE IF NOT EXISTS probe_writes (
    job text, period text, fence bigint, holder text, step text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class Replica:
    """One ``python -m tests.jobs.replica`` process, logging to a file."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = int(env["SMARTPIP_BIND"].rsplit(":", 1)[1])
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.replica"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    async def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(f"http://127.0.0.1:{self.port}/healthz")
        except httpx.TransportError:
            return False
        return answer.status_code == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextmanager
def replicas(
    names: tuple[str, ...], pg_url: str, redis_prefix: str, tmp_path: Path, **probe: str
) -> Iterator[list[Replica]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(PROBE_TABLE)
    with ExitStack() as stack:
        started = []
        for name in names:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "SMARTPIP_BIND": f"127.0.0.1:{free_port()}",
                "SMARTPIP_DATABASE_URL": pg_url,
                "SMARTPIP_REDIS_URL": REDIS_URL,
                "SMARTPIP_REDIS_PREFIX": redis_prefix,
                "SMARTPIP_DRAIN_SECONDS": "0",
                "SMARTPIP_HEALTH_INTERVAL": "0.5",
                "SMARTPIP_REPLICA_NAME": name,
                "SMARTPIP_JOB_LEASE_SECONDS": "3",
                "SMARTPIP_TEST_PROBE_CLAIM_SECONDS": probe.get("claim_seconds", "3600"),
                "SMARTPIP_TEST_PROBE_LEASE_PERIOD": probe.get("lease_period", "3600"),
                "SMARTPIP_TEST_PROBE_WORK": probe.get("work", "0"),
                # The service's own claim jobs on short periods (suggest configured, so the
                # quota job runs; nothing here calls YouTube, whose URL is a closed port).
                "SMARTPIP_JOBS_SCHEDULE": probe.get("schedule", ""),
                "SMARTPIP_YOUTUBE_API_KEY": "replica-test-key",
                "SMARTPIP_YOUTUBE_API_URL": "http://127.0.0.1:9/youtube/v3",
            }
            replica = Replica(name, env, tmp_path / f"{name}.log")
            stack.callback(replica.stop)
            started.append(replica)
        yield started


async def held_periods(replica: Replica) -> Counter[str]:
    """The periods ``replica`` found held by another, per job (``job_runs_total``)."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"http://127.0.0.1:{replica.port}/metrics")
    held: Counter[str] = Counter()
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "job_runs_total" and sample.labels.get("outcome") == "held":
                held[sample.labels["job"]] += int(sample.value)
    return held


def job_lines(replica: Replica, job: str) -> list[dict[str, Any]]:
    return [line for line in replica.lines() if line.get("job") == job and "outcome" in line]


def lease_row(pg_url: str) -> tuple[str, int, str, int] | None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT holder, fence, state, attempts FROM job_runs WHERE job = 'probe-lease'"
        ).fetchone()
    return None if row is None else (row[0], int(row[1]), row[2], int(row[3]))


def writes(pg_url: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT holder, fence, step FROM probe_writes WHERE job = 'probe-lease' ORDER BY at"
        ).fetchall()
    return [(row[0], int(row[1]), row[2]) for row in rows]


async def test_three_replicas_run_each_period_exactly_once(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    schedule = "cleanup=every 1s,quota=every 1s"
    with replicas(
        ("r1", "r2", "r3"), pg_url, redis_prefix, tmp_path, claim_seconds="1", schedule=schedule
    ) as group:
        for replica in group:
            await eventually(replica.ready, within=30)

        def succeeded(job: str) -> Counter[str]:
            return Counter(
                line["period"]
                for replica in group
                for line in job_lines(replica, job)
                if line["outcome"] == "succeeded"
            )

        jobs = ("probe-claim", "cleanup", "quota")
        await eventually(lambda: all(len(succeeded(job)) >= 6 for job in jobs), within=40)
        held: Counter[str] = Counter()
        for replica in group:
            held.update(await held_periods(replica))
        for replica in group:
            replica.stop()
        for job in jobs:
            runs = succeeded(job)
            assert runs and set(runs.values()) == {1}, (job, runs)  # each period once
            outcomes = {line["outcome"] for r in group for line in job_lines(r, job)}
            assert outcomes == {"succeeded"}, (job, outcomes)
            assert held[job] > 0, (job, held)  # the others found it held: the claim decided


async def test_a_killed_holder_is_taken_over_after_its_lease(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    with replicas(("r1", "r2", "r3"), pg_url, redis_prefix, tmp_path, work="6") as group:
        for replica in group:
            await eventually(replica.ready, within=30)
        await eventually(lambda: len(writes(pg_url)) == 1, within=30)
        ((first_holder, first_fence, _step),) = writes(pg_url)
        holder = next(r for r in group if r.name == first_holder)
        holder.process.kill()  # kill -9: no finish; the lease lapses by itself
        holder.process.wait(timeout=10)

        async def taken_over() -> bool:
            row = lease_row(pg_url)
            return row is not None and row[2] == "succeeded"

        await eventually(taken_over, within=40)
    row = lease_row(pg_url)
    assert row is not None
    new_holder, fence, _state, attempts = row
    assert new_holder != first_holder and fence > first_fence and attempts == 2
    assert writes(pg_url) == [
        (first_holder, first_fence, "started"),
        (new_holder, fence, "started"),
        (new_holder, fence, "finished"),
    ]


async def test_a_frozen_holders_late_write_is_refused_by_the_fencing_token(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    with replicas(("r1", "r2"), pg_url, redis_prefix, tmp_path, work="6") as group:
        for replica in group:
            await eventually(replica.ready, within=30)
        await eventually(lambda: len(writes(pg_url)) == 1, within=30)
        ((first_holder, first_fence, _step),) = writes(pg_url)
        frozen = next(r for r in group if r.name == first_holder)
        frozen.process.send_signal(signal.SIGSTOP)  # past its lease, mid-work

        async def taken_over_and_done() -> bool:
            row = lease_row(pg_url)
            return row is not None and row[0] != first_holder and row[2] == "succeeded"

        await eventually(taken_over_and_done, within=40)
        frozen.process.send_signal(signal.SIGCONT)

        async def refused() -> bool:
            return any(
                line.get("event") == "write refused by fencing token" for line in frozen.lines()
            )

        await eventually(refused, within=30)
    row = lease_row(pg_url)
    assert row is not None
    new_holder, fence, state, _attempts = row
    assert state == "succeeded" and new_holder != first_holder and fence > first_fence
    # The old holder wrote before it froze; its late write never landed.
    assert writes(pg_url) == [
        (first_holder, first_fence, "started"),
        (new_holder, fence, "started"),
        (new_holder, fence, "finished"),
    ]
    refusal = next(
        line for line in frozen.lines() if line.get("event") == "write refused by fencing token"
    )
    assert refusal["fence"] == first_fence
