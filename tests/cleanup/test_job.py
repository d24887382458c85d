"""The cleanup job wired into the service: it runs once per period, deletes and counts."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
from psycopg.types.json import Jsonb

from smartpip.runtime.jobs import job_specs, run_job_now
from supervisors import Outcome, utc_now
from tasks.catalogue import JOBS
from tests.app.conftest import AppFactory
from tests.support.polling import eventually


def seed(pg_url: str) -> uuid.UUID:
    """Two audit rows past the default 90 days, one within; a user keeping history a day."""
    now = utc_now()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "INSERT INTO users (oidc_iss, oidc_sub) VALUES ('https://t.example', 's') RETURNING id"
        ).fetchone()
        assert row is not None
        user_id: uuid.UUID = row[0]
        for days in (91, 400, 89):
            conn.execute(
                "INSERT INTO audit_logs (user_id, event, meta, created_at)"
                " VALUES (%s, 'e', %s, %s)",
                (user_id, Jsonb({}), now - dt.timedelta(days=days)),
            )
        conn.execute(
            "INSERT INTO settings (user_id, history_retention_days) VALUES (%s, 1)", (user_id,)
        )
        for n, days in enumerate((2, 0)):
            video_id = f"vid{n:08d}"
            conn.execute(
                "INSERT INTO video_history (user_id, provider, video_id, title, url, watched_at)"
                " VALUES (%s, 'youtube', %s, 't', %s, %s)",
                (user_id, video_id, f"https://youtu.be/{video_id}", now - dt.timedelta(days=days)),
            )
    return user_id


def counts(pg_url: str) -> tuple[int, int]:
    with psycopg.connect(pg_url) as conn:
        audit = conn.execute("SELECT count(*) FROM audit_logs").fetchone()
        history = conn.execute("SELECT count(*) FROM video_history").fetchone()
    assert audit is not None and history is not None
    return int(audit[0]), int(history[0])


def metric(text: str, kind: str) -> float | None:
    prefix = f'cleanup_deleted_total{{kind="{kind}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return None


def test_the_catalogue_has_an_hourly_claim_job() -> None:
    defaults = JOBS["cleanup"]
    assert defaults.kind == "claim"
    assert defaults.schedule.describe() == "every 3600s"
    assert defaults.deadline <= 3600


async def test_a_replica_runs_the_cleanup_and_exports_the_counts(
    app_factory: AppFactory, pg_url: str
) -> None:
    seed(pg_url)
    async with app_factory(jobs_paused="") as app:
        text = ""

        async def succeeded() -> bool:
            nonlocal text
            text = (await app.client.get("/metrics")).text
            return 'job_runs_total{job="cleanup",outcome="succeeded"} 1.0' in text

        await eventually(succeeded)
        assert counts(pg_url) == (1, 1)
        assert metric(text, "audit") == 2.0
        assert metric(text, "history") == 1.0
        assert metric(text, "sessions") is None  # nothing deleted, no sample
        # The period is claimed: an operator's run now finds it held by the replica.
        record = await run_job_now(app.resources, "cleanup")
        assert record.outcome is Outcome.HELD


async def test_an_operator_run_goes_through_the_claim(app_factory: AppFactory, pg_url: str) -> None:
    async with app_factory() as app:  # the job paused on this replica
        assert "cleanup" in [spec.name for spec in job_specs(app.resources)]
        seed(pg_url)
        record = await run_job_now(app.resources, "cleanup")
        assert record.outcome is Outcome.SUCCEEDED, record
        assert counts(pg_url) == (1, 1)
        again = await run_job_now(app.resources, "cleanup")
        assert again.outcome is Outcome.HELD
