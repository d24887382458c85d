"""Dependencies failing under the running app: degrade, fail fast, recover by themselves.

The shared Postgres and Redis are never stopped: a FaultProxy sits between the app and each.
"""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from tests.app.conftest import make_config, running_app
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually

# A hang guard, not a speed check: several times the dependency timeouts these tests are
# about, and below the 30 s request deadline (which would answer "deadline_exceeded"). Which
# setting ended a wait is shown by the answer's code and the logged error, not by the clock.
HANG_GUARD = 10


def dependency_errors(caplog: pytest.LogCaptureFixture, dependency: str) -> list[str]:
    """The errors logged as "dependency unavailable" for ``dependency`` (one line per outage)."""
    return [
        str(record.msg["error"])
        for record in caplog.records
        if record.levelno == logging.WARNING
        and isinstance(record.msg, dict)
        and record.msg.get("event") == "dependency unavailable"
        and record.msg.get("dependency") == dependency
    ]


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, object]]:
    response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_redis_down_is_degraded_not_unready(
    pg_url: str, redis_prefix: str, redis_proxy: FaultProxy
) -> None:
    config = make_config(pg_url, redis_prefix, redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0")
    async with running_app(config, probes=True) as app:
        assert (await readiness(app.client))[1]["checks"] == {
            "postgres": "ok",
            "migrations": "ok",
            "redis": "ok",
        }
        for mode in ("down", "hung"):
            redis_proxy.mode = mode

            async def degraded() -> bool:
                code, body = await readiness(app.client)
                return code == 200 and body["status"] == "degraded"

            await eventually(degraded)
            assert "redis_up 0.0" in (await app.client.get("/metrics")).text
            # Down: the reset ends the wait; hung: only the Redis timeouts (0.25 s command,
            # 0.5 s connect) can, before the guard. The request deadline (30 s) would answer
            # "deadline_exceeded" instead.
            with trio.fail_after(HANG_GUARD):
                response = await app.client.get("/test/redis")
            assert response.status_code == 503
            assert response.json()["code"] == "service_unavailable"
            assert int(response.headers["retry-after"]) > 0
            redis_proxy.mode = "pass"

            async def recovered() -> bool:
                return (await readiness(app.client))[1]["status"] == "ready"

            await eventually(recovered)


async def test_postgres_down_fails_fast_then_recovers(
    pg_url: str, redis_prefix: str, pg_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """ "Fails within about a second": a dead Postgres is noticed from the reset itself, not by
    waiting out a timeout. Every database timeout is set past the hang guard and the health
    monitor's next probe is minutes away, so nothing else could end the request in time."""
    proxy = pg_proxy
    config = make_config(
        pg_url.replace(":5432/", f":{proxy.port}/"),
        redis_prefix,
        db_acquire_timeout="60",
        db_queue_timeout="60",
        db_statement_timeout_ms="60000",
        health_interval="300",
    )
    async with running_app(config, probes=True) as app:
        assert (await app.client.get("/test/db")).status_code == 200
        proxy.mode = "down"
        with trio.fail_after(HANG_GUARD):
            response = await app.client.get("/test/db")
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        (error,) = dependency_errors(caplog, "postgres")
        assert error.startswith("Postgres unavailable: OperationalError"), error
        assert int(response.headers["retry-after"]) > 0

        async def unready() -> bool:
            code, body = await readiness(app.client)
            return code == 503 and body["checks"]["postgres"] == "down"  # type: ignore[index]

        await eventually(unready)
        assert (await app.client.get("/healthz")).status_code == 200
        assert "postgres_up 0.0" in (await app.client.get("/metrics")).text

        proxy.mode = "pass"

        async def ready() -> bool:
            return (await readiness(app.client))[0] == 200

        await eventually(ready)
        assert (await app.client.get("/test/db")).status_code == 200


async def test_postgres_hung_answers_503_within_the_query_budget(
    pg_url: str, redis_prefix: str, pg_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A frozen Postgres never answers, and the health monitor's next probe is minutes away:
    only the database call's budget (acquire + query timeout) can end the request, and the
    logged error says it did. No clock: the budget itself is the figure."""
    proxy = pg_proxy
    config = make_config(
        pg_url.replace(":5432/", f":{proxy.port}/"),
        redis_prefix,
        db_statement_timeout_ms="500",
        health_interval="300",
    )
    async with running_app(config, probes=True) as app:
        settings = app.resources.db.settings
        budget = settings.acquire_timeout + settings.query_timeout
        assert budget == 2.5  # 1 s acquire + (0.5 s statement timeout + 1 s margin)
        assert (await app.client.get("/test/db")).status_code == 200
        proxy.mode = "hung"
        with trio.fail_after(HANG_GUARD):
            response = await app.client.get("/test/db")
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert dependency_errors(caplog, "postgres") == [
            f"Postgres did not answer within {budget} s"
        ]
        assert (await app.client.get("/healthz")).status_code == 200
        proxy.mode = "pass"


async def test_postgres_known_down_answers_at_once_without_the_pool(
    pg_url: str, redis_prefix: str, pg_proxy: FaultProxy
) -> None:
    """Once the health monitor has found Postgres down, a request is answered 503 without
    asking the pool for a connection (which, Postgres being frozen, would wait its whole
    acquire timeout); when the monitor finds it back, requests go through at once."""
    proxy = pg_proxy
    config = make_config(pg_url.replace(":5432/", f":{proxy.port}/"), redis_prefix)
    async with running_app(config, probes=True) as app:
        db = app.resources.db
        assert (await app.client.get("/test/db")).status_code == 200
        proxy.mode = "hung"

        async def unready() -> bool:
            code, body = await readiness(app.client)
            return code == 503 and body["checks"]["postgres"] == "down"  # type: ignore[index]

        await eventually(unready)
        before = db.stats()
        response = await app.client.get("/test/db")
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert int(response.headers["retry-after"]) > 0
        after = db.stats()
        assert after["requests"] == before["requests"], "the request went to the pool"
        assert after["queued"] == 0

        proxy.mode = "pass"

        async def answers() -> bool:
            return (await app.client.get("/test/db")).status_code == 200

        await eventually(answers)
        assert (await readiness(app.client))[0] == 200


async def test_a_request_failing_on_postgres_wakes_the_health_monitor(
    pg_url: str, redis_prefix: str, pg_proxy: FaultProxy
) -> None:
    """The monitor's next scheduled probe is minutes away: only a request that could not get
    an answer can make it probe now, and while Postgres is down it probes often, so recovery
    shows without waiting for the schedule either."""
    proxy = pg_proxy
    config = make_config(
        pg_url.replace(":5432/", f":{proxy.port}/"), redis_prefix, health_interval="300"
    )
    async with running_app(config, probes=True) as app:
        db = app.resources.db
        assert (await app.client.get("/test/db")).status_code == 200
        proxy.mode = "down"
        assert (await app.client.get("/test/db")).status_code == 503
        await eventually(lambda: db.stats()["down"] == 1)
        code, body = await readiness(app.client)
        assert code == 503 and body["checks"]["postgres"] == "down"  # type: ignore[index]
        requests = db.stats()["requests"]
        assert (await app.client.get("/test/db")).status_code == 503
        assert db.stats()["requests"] == requests

        proxy.mode = "pass"

        async def ready() -> bool:
            return (await readiness(app.client))[0] == 200

        await eventually(ready)
        assert (await app.client.get("/test/db")).status_code == 200
