"""Ops and public endpoints: liveness, readiness, metrics, status, OpenAPI, supervision."""

from __future__ import annotations

import json
import re

import pytest

from smartpip.http.problems import PROBLEM_JSON
from smartpip.http.public import load_openapi
from tests.app.conftest import AppFactory, RunningApp
from tests.support.polling import eventually

OPS_TOKEN = "o" * 40


async def test_healthz(app: RunningApp) -> None:
    response = await app.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_readyz_ready_when_postgres_and_redis_answer(app: RunningApp) -> None:
    response = await app.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "migrations": "ok", "redis": "ok"},
    }


async def test_readyz_503_while_draining(app: RunningApp) -> None:
    app.lifecycle.begin_drain()
    response = await app.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "draining"
    assert response.headers["retry-after"] == "5"
    assert (await app.client.get("/healthz")).status_code == 200


async def test_status_lists_every_feature(app: RunningApp) -> None:
    body = (await app.client.get("/v1/status")).json()
    assert set(body) == {"version", "features"}
    assert body["version"] == "0.1.0"
    assert set(body["features"]) == {"signIn", "history", "suggest", "playlist"}
    assert set(body["features"].values()) <= {"up", "degraded", "down", "disabled"}


async def test_metrics_have_route_templates_and_gauges(app: RunningApp) -> None:
    await app.client.get("/healthz")
    await app.client.get("/v1/status")
    text = (await app.client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert (
        'http_request_duration_seconds_bucket{le="0.001",method="GET",route="/v1/status"}' in text
    )
    assert "postgres_up 1.0" in text
    assert "redis_up 1.0" in text
    assert re.search(r'db_pool_connections\{state="max"\} 4\.0', text)
    assert "process_cpu_seconds_total" in text
    assert "supervisor_restarts_total" in text


async def test_metrics_cardinality_is_bounded(app: RunningApp) -> None:
    for i in range(60):
        assert (await app.client.get(f"/no/such/path/{i}?user={i}")).status_code == 404
        await app.client.request("BREW", f"/x{i}")
    text = (await app.client.get("/metrics")).text
    series = [line for line in text.splitlines() if line.startswith("http_requests_total{")]
    routes = {re.search(r'route="([^"]*)"', line)[1] for line in series}  # type: ignore[index]
    assert routes <= {"unmatched", "/healthz", "/metrics"}
    assert "/no/such" not in text and "user=" not in text
    assert len(series) <= 4
    assert 'method="OTHER"' in text


async def test_openapi_documents_exactly_the_routes(app_factory: AppFactory) -> None:
    from smartpip.runtime.app import create_app
    from smartpip.runtime.lifecycle import Lifecycle

    async with app_factory() as running:
        middleware = create_app(running.resources, Lifecycle())
        rules = {
            (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
            for rule in middleware.app.url_map.iter_rules()  # type: ignore[attr-defined]
            if rule.endpoint != "static"
            for method in rule.methods or ()
            if method not in {"HEAD", "OPTIONS"}
        }
        served = (await running.client.get("/v1/openapi.json")).json()
    document = json.loads(load_openapi())
    assert served == document
    assert document["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == rules


async def test_ops_supervisors_disabled_without_token(app: RunningApp) -> None:
    response = await app.client.get("/ops/supervisors")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_ops_supervisors_requires_the_token(app_factory: AppFactory) -> None:
    async with app_factory(ops_token=OPS_TOKEN) as app:
        missing = await app.client.get("/ops/supervisors")
        wrong = await app.client.get(
            "/ops/supervisors", headers={"Authorization": "Bearer " + "x" * 40}
        )
        good = await app.client.get(
            "/ops/supervisors", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
        )
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    assert "Bearer" in missing.headers["www-authenticate"]
    assert good.status_code == 200
    child = good.json()["children"]["health-monitor"]
    assert child["supervisor"] == "root"
    assert child["state"] == "running"
    assert child["restarts"] == 0
    assert good.json()["backups"] == {
        "enabled": False,
        "reason": "SMARTPIP_BACKUP_S3_BUCKET is not set",
    }


async def test_ops_supervisors_says_where_backups_go(app_factory: AppFactory) -> None:
    settings = {"backup_s3_bucket": "nightly-dumps", "jobs_paused": "backup"}
    async with app_factory(ops_token=OPS_TOKEN, **settings) as app:
        response = await app.client.get(
            "/ops/supervisors", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
        )
        metrics = (await app.client.get("/metrics")).text
    assert response.json()["backups"] == {
        "enabled": True,
        "bucket": "nightly-dumps",
        "prefix": "smartpip/",
        "retentionDays": 35,
        "drillDays": 7,
    }
    assert "backup_enabled 1.0" in metrics


async def test_a_failing_supervised_task_is_restarted_logged_and_counted(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The health monitor crashing (a bug, not a dependency outage) is restarted with
    backoff, logged with its cause, counted in the metric and shown in /ops/supervisors."""
    async with app_factory(ops_token=OPS_TOKEN) as app:
        app.resources.health.migrations = None  # type: ignore[assignment]  # probe now raises

        async def restarted() -> bool:
            # The counter starts at 0 (the alert rules see the first restart as an increase).
            text = (await app.client.get("/metrics")).text
            return (
                re.search(r'supervisor_restarts_total\{child="health-monitor"\} [1-9]', text)
                is not None
            )

        await eventually(restarted, within=10)
        tree = (
            await app.client.get(
                "/ops/supervisors", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
            )
        ).json()["children"]["health-monitor"]
    assert tree["restarts"] >= 1
    assert tree["last_error"].startswith("TypeError")
    assert tree["last_error_at"] is not None
    restarts = [r for r in caplog.records if r.getMessage() == "child restarting"]
    assert restarts and restarts[0].levelname == "WARNING"
    assert "TypeError" in restarts[0].cause  # type: ignore[attr-defined]
