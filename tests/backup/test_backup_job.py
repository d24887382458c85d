"""The ``backup`` job through its fenced Postgres lease: one backup per night across replicas,
and a replica that lost the night writes no manifest."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import psycopg
import pytest

from store.backup_s3 import S3Settings
from store.errors import FencedOut
from store.jobs import acquire_lease
from store.postgres import Database, PostgresSettings, open_database
from supervisors import Daily, JobRun, JobSpec, Outcome, run_period
from tasks.backup import Backups, backup_job
from tasks.catalogue import JOBS
from tasks.claims import PostgresLeases, fenced
from tests.backup.conftest import object_keys

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def db(sample_db: str) -> AsyncIterator[Database]:
    async with open_database(PostgresSettings(url=sample_db, max_size=2)) as database:
        yield database


def _spec(backups: Backups, db: Database) -> JobSpec:
    defaults = JOBS["backup"]
    return JobSpec(
        name="backup",
        schedule=defaults.schedule,
        body=backup_job(backups, lambda run: fenced(db, run)),
        claims=PostgresLeases(db, lease_seconds=30.0),
        deadline=defaults.deadline,
    )


def test_the_backup_job_is_a_nightly_lease() -> None:
    defaults = JOBS["backup"]
    assert defaults.kind == "lease"
    assert defaults.schedule == Daily(dt.time(3, 30), dt.UTC)
    assert defaults.retry_after == 900.0  # a failed night is retried, but not every minute


async def test_two_replicas_make_one_backup_per_night(
    backups: Backups, db: Database, s3_settings: S3Settings
) -> None:
    spec = _spec(backups, db)

    first = await run_period(spec, holder="replica-a")
    second = await run_period(spec, holder="replica-b")

    assert first.outcome is Outcome.SUCCEEDED
    assert second.outcome is Outcome.HELD
    assert second.holder == "replica-a"
    manifests = [k for k in object_keys(s3_settings) if k.endswith(".manifest.json")]
    assert len(manifests) == 1


async def test_a_replica_that_lost_the_night_writes_no_manifest(
    backups: Backups, db: Database, sample_db: str, s3_settings: S3Settings
) -> None:
    period = JOBS["backup"].schedule.period_at(dt.datetime.now(dt.UTC))

    def take(holder: str) -> int:
        with psycopg.connect(sample_db) as conn:
            taken = acquire_lease(conn, "backup", period.start, period.end, holder, 30.0)
        assert isinstance(taken, int)
        return taken

    stale = take("replica-a")
    with psycopg.connect(sample_db) as conn:  # replica-a freezes; its lease lapses
        conn.execute("UPDATE job_runs SET lease_until = now() - interval '1 second'")
    take("replica-b")
    run = JobRun("backup", period, "replica-a", stale)

    with pytest.raises(FencedOut):
        await backups.run(lambda: fenced(db, run))

    assert not [k for k in object_keys(s3_settings) if k.endswith(".manifest.json")]
