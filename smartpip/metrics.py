"""Prometheus metrics, on a registry owned by the composition root (no global registry).

Cardinality rule: labels take values from closed sets only. ``route`` is the matched route
template (``/v1/history/<provider>/<video_id>``) or ``unmatched``; ``method`` is one of the
standard verbs or ``OTHER``; never a raw path, user ID or client address.

The ``*_created`` series of counters and histograms are not exported (they double the series
for a timestamp no alert or panel reads): :func:`prometheus_client.disable_created_metrics`,
which is process-wide, is called when the first :class:`Metrics` is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisors import Outcome, RunRecord

__all__ = [
    "FEATURE_STATES",
    "KNOWN_METHODS",
    "OIDC_ENDPOINTS",
    "OIDC_OUTCOMES",
    "UNMATCHED_ROUTE",
    "Metrics",
]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
# The pool statistics that are levels (gauges); the pool's cumulative counters are left out.
POOL_GAUGES = ("size", "available", "busy", "waiting", "queued", "min", "max")
# Why these buckets: the API answers in single-digit milliseconds when healthy; the tail
# buckets show dependency timeouts (0.25 s Redis, 1 s Postgres acquire, 5 s statements).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The OpenID client's requests (smartpip.auth.oidc), initialised at zero so that the first
# failure is an increase the alert rules see.
OIDC_ENDPOINTS = ("discovery", "jwks", "token", "revocation")
OIDC_OUTCOMES = ("ok", "error", "rejected", "misconfigured")
# Why these: jobs take from milliseconds (a claim held elsewhere) to an hour (a backup).
JOB_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class _SnapshotCollector(Collector):
    """Gauges read at scrape time from live objects (pool statistics, dependency health)."""

    def __init__(
        self,
        pool_stats: Callable[[], Mapping[str, int]],
        dependency_up: Callable[[], Mapping[str, bool]],
        ready: Callable[[], bool],
    ) -> None:
        self._pool_stats = pool_stats
        self._dependency_up = dependency_up
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        pool = GaugeMetricFamily(
            "db_pool_connections", "Postgres pool connections by state", labels=["state"]
        )
        stats = self._pool_stats()
        for state in POOL_GAUGES:
            if state in stats:
                pool.add_metric([state], stats[state])
        yield pool
        for name, up in sorted(self._dependency_up().items()):
            yield GaugeMetricFamily(f"{name}_up", f"1 when {name} answered the last probe", up)
        yield GaugeMetricFamily(
            "service_ready",
            "1 when Postgres answers and every migration is applied (what /readyz checks, "
            "draining aside)",
            1 if self._ready() else 0,
        )


class _ConnectionsCollector(Collector):
    """The HTTP server's connection counts (:class:`smartpip.http.server.ConnectionGate`)."""

    def __init__(self, open_now: Callable[[], int], refused: Callable[[], int]) -> None:
        self._open = open_now
        self._refused = refused

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "http_connections_open", "Client connections being served", self._open()
        )
        yield CounterMetricFamily(
            "http_connections_refused",
            "Client connections refused at the connection limit (answered 503)",
            self._refused(),
        )


FEATURE_STATES = ("up", "degraded", "down", "disabled")


class _FeaturesCollector(Collector):
    """``feature_state{feature,state}``: 1 for each feature's state now (what /v1/status
    says), 0 for its other states; nothing until the app has set :attr:`source`."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, str]] | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "feature_state",
            "1 for the state each feature is in (up, degraded, down, disabled), as /v1/status",
            labels=["feature", "state"],
        )
        states = self.source() if self.source is not None else {}
        for feature, now in sorted(states.items()):
            for state in FEATURE_STATES:
                family.add_metric([feature, state], 1 if state == now else 0)
        yield family


class Metrics:
    """Every metric the service exports, registered on one :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped upstream)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.job_runs = Counter(
            "job_runs_total",
            "Periods of scheduled jobs seen by this replica, by outcome (succeeded, failed, "
            "timeout, lost; held: another replica ran it; unclaimed; paused)",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "job_duration_seconds",
            "Time a scheduled job's run took on this replica",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.job_last_success = Gauge(
            "job_last_success_timestamp_seconds",
            "When this replica last ran the job successfully (Unix time)",
            ["job"],
            registry=self.registry,
        )
        self.cleanup_deleted = Counter(
            "cleanup_deleted_total",
            "Rows deleted by the cleanup job on this replica, by kind (sessions, audit, "
            "history, job_runs)",
            ["kind"],
            registry=self.registry,
        )
        self.backup_enabled = Gauge(
            "backup_enabled",
            "1 when backups are configured (SMARTPIP_BACKUP_S3_BUCKET), else 0",
            registry=self.registry,
        )
        self.backup_last_success = Gauge(
            "backup_last_success_timestamp_seconds",
            "When this replica last completed a verified backup (Unix time)",
            registry=self.registry,
        )
        self.backup_size = Gauge(
            "backup_size_bytes", "Size of the last verified backup", registry=self.registry
        )
        self.backup_duration = Gauge(
            "backup_duration_seconds",
            "How long the last backup took (dump, upload and verification)",
            registry=self.registry,
        )
        self.backup_drill_success = Gauge(
            "backup_drill_success",
            "1 when the last restore drill restored the backup with equal row counts, 0 when not",
            registry=self.registry,
        )
        self.backup_drill_last_timestamp = Gauge(
            "backup_drill_last_timestamp_seconds",
            "When this replica last ran a restore drill (Unix time), whatever its result",
            registry=self.registry,
        )
        self.backup_drill_duration = Gauge(
            "backup_drill_duration_seconds",
            "How long the last restore drill took (the measured restore time)",
            registry=self.registry,
        )
        self.supervisor_restarts = Counter(
            "supervisor_restarts_total",
            "Restarts of supervised tasks",
            ["child"],
            registry=self.registry,
        )
        self.job_period = Gauge(
            "job_period_seconds",
            "Length of the job's current period (unpaused jobs only)",
            ["job"],
            registry=self.registry,
        )
        self.build_info = Gauge(
            "smartpip_build_info",
            "Always 1; the labels say which version and commit this process runs",
            ["version", "commit"],
            registry=self.registry,
        )
        self.oidc_requests = Counter(
            "oidc_requests_total",
            "Requests to the OpenID provider by endpoint (discovery, jwks, token, revocation) "
            "and outcome (ok; error: unreachable or a bad answer; rejected: the user's code "
            "refused; misconfigured: our client credentials refused)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        for endpoint in OIDC_ENDPOINTS:
            for outcome in OIDC_OUTCOMES:
                self.oidc_requests.labels(endpoint, outcome)
        self._features = _FeaturesCollector()
        self.registry.register(self._features)

    def watch_features(self, states: Callable[[], Mapping[str, str]]) -> None:
        """Export each feature's state, read from ``states`` at scrape time (replaces any
        earlier source: the app may be built more than once on the same resources)."""
        self._features.source = states

    def set_build(self, version: str, commit: str) -> None:
        """Export ``smartpip_build_info{version, commit} 1``."""
        self.build_info.labels(version, commit).set(1)

    def declare_children(self, names: Iterable[str]) -> None:
        """Start every supervised child's restart counter at zero, so a first restart shows."""
        for name in names:
            self.supervisor_restarts.labels(name)

    def declare_job(self, name: str, period_seconds: float | None) -> None:
        """Export a job's period length; None (a paused job) exports none."""
        if period_seconds is not None:
            self.job_period.labels(name).set(period_seconds)

    def on_oidc_request(self, endpoint: str, outcome: str) -> None:
        """OpenID client hook: count one request to the provider."""
        self.oidc_requests.labels(endpoint, outcome).inc()

    def on_job_run(self, record: RunRecord) -> None:
        """Job-loop hook: count one run (or non-run) of a scheduled job's period."""
        self.job_runs.labels(record.job, record.outcome.value).inc()
        if record.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TIMEOUT, Outcome.LOST):
            self.job_duration.labels(record.job).observe(record.seconds)
        if record.outcome is Outcome.SUCCEEDED:
            self.job_last_success.labels(record.job).set_to_current_time()

    def on_cleanup_deleted(self, kind: str, rows: int) -> None:
        """Cleanup hook: count one committed batch of ``rows`` deleted rows of ``kind``."""
        self.cleanup_deleted.labels(kind).inc(rows)

    def on_backup(self, *, size: int, seconds: float) -> None:
        """Backup hook: a verified backup and its manifest were written."""
        self.backup_last_success.set_to_current_time()
        self.backup_size.set(size)
        self.backup_duration.set(seconds)

    def on_drill(self, *, ok: bool, seconds: float) -> None:
        """Backup hook: a restore drill ended."""
        self.backup_drill_success.set(1 if ok else 0)
        self.backup_drill_last_timestamp.set_to_current_time()
        self.backup_drill_duration.set(seconds)

    def watch(
        self,
        pool_stats: Callable[[], Mapping[str, int]],
        dependency_up: Callable[[], Mapping[str, bool]],
        ready: Callable[[], bool],
    ) -> None:
        """Export pool, dependency and readiness gauges computed at scrape time."""
        self.registry.register(_SnapshotCollector(pool_stats, dependency_up, ready))

    def watch_connections(self, open_now: Callable[[], int], refused: Callable[[], int]) -> None:
        """Export the HTTP server's open connections and refusals, read at scrape time."""
        self.registry.register(_ConnectionsCollector(open_now, refused))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method if method in KNOWN_METHODS else "OTHER", route, status)
        children = self._request_children.get(key)
        if children is None:
            # labels() costs a lock and a tuple build per call; the label sets are closed
            # (methods x route templates x statuses), so caching the children is bounded.
            children = (
                self.http_requests.labels(key[0], route, str(status)),
                self.http_duration.labels(key[0], route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def on_restart(self, child: str, _cause: BaseException | None) -> None:
        """Supervisor hook: count one restart of ``child``."""
        self.supervisor_restarts.labels(child).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
