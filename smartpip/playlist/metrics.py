"""The playlist write's Prometheus metrics.

Labels take values from closed sets only: ``outcome`` (:data:`OUTCOMES`), ``method``
(``playlists``, ``playlistItems``) and the YouTube client's call outcomes. Never a user, video
or playlist ID.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from store.playlist_quota import PlaylistUsage

__all__ = ["OUTCOMES", "PlaylistMetrics"]

#: Every ``outcome`` of ``playlist_writes_total``.
OUTCOMES = (
    "added",
    "already_added",
    "replayed",
    "not_connected",
    "busy",
    "key_reused",
    "playlist_full",
    "video_not_found",
    "playlist_not_found",
    "playlist_forbidden",
    "budget",
    "quota",
    "user_limit",
    "unavailable",
    "upstream_error",
)


class PlaylistMetrics:
    """The playlist metrics, registered on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.writes = Counter(
            "playlist_writes_total",
            "POST /v1/youtube/playlist answers by outcome",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.writes.labels(outcome)
        self.units = Counter(
            "playlist_quota_units_spent_total",
            "YouTube quota units reserved for playlist calls (by this process)",
            registry=registry,
        )
        self.upstream_calls = Counter(
            "playlist_upstream_calls_total",
            "YouTube playlist calls by method and outcome",
            ["method", "outcome"],
            registry=registry,
        )
        self.units_used = Gauge(
            "playlist_quota_units_used",
            "Units playlist writes spent in the current Pacific-time day (all replicas)",
            registry=registry,
        )
        self.units_budget = Gauge(
            "playlist_quota_units_budget",
            "Units playlist writes may spend a Pacific-time day (SMARTPIP_PLAYLIST_SHARE)",
            registry=registry,
        )

    def write(self, outcome: str) -> None:
        """Count one answer."""
        self.writes.labels(outcome).inc()

    def call(self, method: str, outcome: str) -> None:
        """Count one YouTube call."""
        self.upstream_calls.labels(method, outcome).inc()

    def set_usage(self, usage: PlaylistUsage, budget: int) -> None:
        """Show the day's shared usage against the playlists' budget (units)."""
        self.units_used.set(usage.playlist_units)
        self.units_budget.set(budget)
