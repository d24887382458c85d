"""The alert rules: valid for promtool, and every rule proven by promtool's unit tests to fire
when it should and stay silent in its near misses (deploy/prometheus/alerts.test.yml)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.promtool import PROMETHEUS, promtool

RULES = PROMETHEUS / "alerts.yml"
TESTS = PROMETHEUS / "alerts.test.yml"
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _evaluations() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(TESTS.read_text())["tests"]
    return [check for case in cases for check in case["alert_rule_test"]]


def _substitute(template: str, labels: dict[str, str]) -> str:
    return _LABEL.sub(lambda match: labels[match[1]], template)


def _completed(alerts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The test file with each expected alert's static annotations copied from its rule."""
    document: dict[str, Any] = yaml.safe_load(TESTS.read_text())
    for case in document["tests"]:
        for check in case["alert_rule_test"]:
            annotations = alerts[check["alertname"]]["annotations"]
            for expected in check["exp_alerts"]:
                labels = {k: str(v) for k, v in expected["exp_labels"].items()}
                filled = expected.setdefault("exp_annotations", {})
                for name in ("description", "runbook_url"):
                    filled[name] = _substitute(annotations[name], labels)
    return document


def test_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "rules", RULES)


def test_every_rule_fires_and_stays_silent_in_its_tests(tmp_path: Path) -> None:
    alerts = _alerts()
    evaluations = _evaluations()
    firing = {c["alertname"] for c in evaluations if c["exp_alerts"]}
    silent = {c["alertname"] for c in evaluations if not c["exp_alerts"]}
    assert set(alerts) - firing == set(), "rules without a firing test"
    assert set(alerts) - silent == set(), "rules without a silent (near-miss) test"
    completed = tmp_path / "alerts.test.yml"
    document = _completed(alerts)
    document["rule_files"] = [str(RULES)]
    completed.write_text(yaml.safe_dump(document, sort_keys=False))
    assert "SUCCESS" in promtool("test", "rules", completed)


def test_every_rule_says_what_to_do_and_links_its_runbook_entry() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {m.lower() for m in re.findall(r"^#{2,4} (\w+)$", runbook, re.MULTILINE)}
    for name, rule in _alerts().items():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/monitoring.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/monitoring.md has no section {name}"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
