"""What the service and node_exporter export, and what a PromQL expression reads: the rules
and the dashboard may only read metrics that exist."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from smartpip.metrics import Metrics
from smartpip.suggest.metrics import SuggestMetrics

__all__ = ["NODE_EXPORTER", "exported_names", "metric_names"]

# The node_exporter metrics the rules and the dashboard read (its default collectors).
NODE_EXPORTER = frozenset(
    {
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
    }
)
# Series Prometheus makes itself for every target.
SCRAPE = frozenset({"up"})
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}
# A metric name followed by its selector: the rules and the dashboard always write one
# (job="smartpip" or job="node"), so every metric they read is found this way.
_SELECTED = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def _names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def exported_names() -> frozenset[str]:
    """Every metric name the service can export (suggest configured), node_exporter's used
    ones, and ``up``."""
    metrics = Metrics()
    metrics.watch(dict, lambda: {"postgres": True, "redis": True}, lambda: True)
    metrics.watch_connections(lambda: 0, lambda: 0)
    SuggestMetrics(metrics.registry)
    return frozenset(_names(metrics.registry)) | NODE_EXPORTER | SCRAPE


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (``name{...}``)."""
    return set(_SELECTED.findall(expr))
