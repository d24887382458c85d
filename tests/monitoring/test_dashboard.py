"""The Grafana dashboard and the monitoring profile's configuration: the JSON loads, every
panel reads the provisioned Prometheus, every query parses (promtool) and reads only metrics
that the service or node_exporter export; prometheus.yml passes ``promtool check config``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.exported import exported_names, metric_names
from tests.monitoring.promtool import DEPLOY, PROMETHEUS, promtool

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "smartpip.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "smartpip.yml"
# Grafana's interval variables, given the values Grafana would (a scrape interval of 15 s).
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def _queries() -> list[tuple[str, str]]:
    """Each panel's title and PromQL, Grafana's variables substituted."""
    queries = []
    for panel in _panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def test_the_dashboard_loads_and_reads_the_provisioned_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", path)


def test_queries_and_rules_read_only_exported_metrics() -> None:
    exported = exported_names()
    for title, expr in _queries():
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr}"
        assert names <= exported, f"{title}: {sorted(names - exported)} are not exported"
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']}: {sorted(names - exported)} are not exported"


def test_the_dashboard_covers_what_the_operator_asked_for() -> None:
    read = set().union(*(metric_names(expr) for _, expr in _queries()))
    for metric in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "suggest_breaker_open",
        "feature_state",
        "suggest_quota_searches_used",
        "suggest_quota_searches_budget",
        "suggest_quota_reset_timestamp_seconds",
        "suggest_cache_total",
        "job_runs_total",
        "backup_last_success_timestamp_seconds",
        "backup_drill_success",
        "postgres_up",
        "redis_up",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes",
    ):
        assert metric in read, metric


def test_the_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]  # where compose mounts it
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"smartpip", "node"}  # the rules and the dashboard select on these
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert "SUCCESS" in promtool("check", "config", path)


def test_the_monitoring_profile_in_compose() -> None:
    compose = yaml.safe_load((DEPLOY.parent / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("prometheus", "node-exporter", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY.parent / source).exists(), f"{name} mounts missing {source}"
    for name in ("api-1", "api-2", "postgres", "redis", "nginx"):
        assert "profiles" not in services[name], f"{name} must run without a profile"
    assert {"prometheus_data", "grafana_data"} <= set(compose["volumes"])
    # The scraper reaches every replica (`api` on the internal metrics network) and the host's
    # exporter; the public vhost never serves /metrics.
    assert "metrics" in services["prometheus"]["networks"]
    assert "metrics" in services["node-exporter"]["networks"]
    for name in ("api-1", "api-2"):
        assert services[name]["networks"]["metrics"] == {"aliases": ["api"]}, name
