"""The metrics the alert rules and the dashboard read (docs/monitoring.md): build info,
readiness, request durations by method and route, job periods, restart counters from zero,
no ``*_created`` series, and label values that stay bounded whatever the traffic."""

from __future__ import annotations

import re
import uuid

from smartpip.metrics import Metrics
from tests.app.conftest import AppFactory, RunningApp


def _series(text: str, prefixes: tuple[str, ...]) -> set[str]:
    """The series (name and labels, no value) whose names start with one of ``prefixes``."""
    return {
        line.rsplit(" ", 1)[0]
        for line in text.splitlines()
        if line.startswith(prefixes) and not line.startswith("#")
    }


async def test_metrics_the_rules_read(app_factory: AppFactory) -> None:
    async with app_factory(build_commit="0123abc", jobs_paused="") as app:
        await app.client.get("/v1/status")
        await app.client.head("/v1/status")
        status = (await app.client.get("/v1/status")).json()["features"]
        text = (await app.client.get("/metrics")).text
        children = set(app.resources.supervision.snapshot())
    assert 'smartpip_build_info{commit="0123abc",version="0.1.0"} 1.0' in text
    assert "service_ready 1.0" in text
    for feature, state in status.items():
        assert f'feature_state{{feature="{feature}",state="{state}"}} 1.0' in text
        assert text.count(f'feature_state{{feature="{feature}",') == 4
    assert 'http_request_duration_seconds_count{method="GET",route="/v1/status"} 2.0' in text
    assert 'http_request_duration_seconds_count{method="HEAD",route="/v1/status"} 1.0' in text
    assert "_created" not in text
    assert 'oidc_requests_total{endpoint="token",outcome="misconfigured"} 0.0' in text
    periods = dict(re.findall(r'job_period_seconds\{job="(\w+)"\} (\S+)', text))
    assert float(periods["cleanup"]) > 0
    restarts = set(re.findall(r'supervisor_restarts_total\{child="([^"]+)"\} 0\.0', text))
    assert children and restarts == children


async def test_a_paused_job_exports_no_period(app_factory: AppFactory) -> None:
    async with app_factory(jobs_paused="cleanup") as app:
        text = (await app.client.get("/metrics")).text
    assert "job_period_seconds{" not in text


def test_not_ready_shows_in_the_gauge() -> None:
    metrics = Metrics()
    ready = [True]
    metrics.watch(dict, lambda: {"postgres": ready[0]}, lambda: ready[0])
    assert "service_ready 1.0" in metrics.render().decode()
    ready[0] = False
    text = metrics.render().decode()
    assert "service_ready 0.0" in text and "postgres_up 0.0" in text


async def test_a_thousand_paths_and_users_add_no_series(app: RunningApp) -> None:
    tokens = app.resources.tokens
    watched = ("http_", "rate_limit_")

    async def traffic(start: int, count: int) -> None:
        for i in range(start, start + count):
            user = uuid.uuid4()
            headers = {"Authorization": f"Bearer {tokens.issue(user)}"}
            deleted = await app.client.delete(f"/v1/history/youtube/vid{i:06d}", headers=headers)
            assert deleted.status_code in (204, 404)
            missing = await app.client.get(f"/nope/{user}?user={user}")
            assert missing.status_code == 404

    await traffic(0, 3)
    await app.client.get("/metrics")  # its own series appear once it has been answered
    before = (await app.client.get("/metrics")).text
    await traffic(3, 1000)
    after = (await app.client.get("/metrics")).text
    assert _series(after, watched) == _series(before, watched)
    assert "vid000" not in after and "/nope" not in after and "user=" not in after
