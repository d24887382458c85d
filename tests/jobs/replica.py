"""A replica for the multi-process job tests: ``smartpip serve`` plus two probe jobs.

Run as ``python -m tests.jobs.replica``: the real service (``smartpip.runtime.main.main``, the
configuration from the environment like ``smartpip serve``) with two test jobs beside the
service's own, so that the tests can see and freeze a run at a chosen moment:

- ``probe-claim`` (a Redis claim, ``SMARTPIP_TEST_PROBE_CLAIM_SECONDS`` periods): logs its run;
- ``probe-lease`` (a fenced Postgres lease, one period of ``SMARTPIP_TEST_PROBE_LEASE_PERIOD``
  seconds): writes ``started`` to ``probe_writes`` (fenced), works for
  ``SMARTPIP_TEST_PROBE_WORK`` seconds (the injected slow work), then writes ``finished``
  (fenced, shielded: a write already in flight when the process is frozen). A refused write
  is logged as ``write refused by fencing token``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import psycopg
import trio

from smartpip.config import Config, ConfigError
from smartpip.logs import configure_logging, get_logger
from smartpip.runtime.main import main
from smartpip.runtime.resources import postgres_settings
from store.errors import FencedOut
from store.jobs import check_fence
from store.postgres import open_database
from store.redis import RedisSettings, open_redis
from supervisors import Every, JobRun, JobSpec
from tasks.claims import PostgresLeases, RedisClaims

log = get_logger("tests.jobs.replica")

INSERT_WRITE = """
INSERT INTO probe_writes (job, period, fence, holder, step) VALUES (%s, %s, %s, %s, %s)
"""


def _write(conn: psycopg.Connection[Any], run: JobRun, step: str) -> None:
    assert run.fence is not None
    check_fence(conn, run.job, run.period.start, run.fence)
    conn.execute(INSERT_WRITE, (run.job, run.period.key, run.fence, run.holder, step))


async def amain() -> int:
    try:
        config = Config.from_env()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    claim_seconds = float(os.environ["SMARTPIP_TEST_PROBE_CLAIM_SECONDS"])
    lease_period = float(os.environ["SMARTPIP_TEST_PROBE_LEASE_PERIOD"])
    work = float(os.environ["SMARTPIP_TEST_PROBE_WORK"])
    async with (
        open_database(postgres_settings(config)) as db,
        open_redis(RedisSettings(url=config.redis_url, prefix=config.redis_prefix)) as redis,
    ):

        async def claimed(run: JobRun) -> Mapping[str, object]:
            return {"probe": "claim"}

        async def leased(run: JobRun) -> Mapping[str, object]:
            await db.run(_write, run, "started")
            await trio.sleep(work)
            with trio.CancelScope(shield=True):
                try:
                    await db.run(_write, run, "finished")
                except FencedOut:
                    log.warning("write refused by fencing token", fence=run.fence)
                    raise
            return {"probe": "lease"}

        jobs = [
            JobSpec("probe-claim", Every(claim_seconds), claimed, RedisClaims(redis), 30.0),
            JobSpec(
                "probe-lease",
                Every(lease_period),
                leased,
                PostgresLeases(db, config.job_lease_seconds),
                deadline=lease_period,
                retry_after=1.0,
            ),
        ]
        return await main(config, extra_jobs=jobs)


if __name__ == "__main__":
    sys.exit(trio.run(amain))
