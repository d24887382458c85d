"""The composition root: opens every long-lived resource once and passes it in.

Nothing in the service reaches for a module-level pool, client or registry; each consumer
receives what it needs from :class:`Resources`, which :func:`open_resources` builds and closes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib import metadata

import attrs
import httpx

from smartpip.auth.nonces import Nonces
from smartpip.auth.oidc import OidcClient, OidcSettings
from smartpip.auth.sessions import SessionPolicy, Sessions
from smartpip.config import Config
from smartpip.http.guards import Guards
from smartpip.http.ratelimit import RateLimiter
from smartpip.http.revocation import TokenRevocations
from smartpip.http.tokens import AccessTokens
from smartpip.metrics import Metrics
from smartpip.playlist.budget import BudgetSettings, PlaylistBudget
from smartpip.playlist.connect import Connections
from smartpip.playlist.grants import Grants
from smartpip.playlist.metrics import PlaylistMetrics
from smartpip.playlist.write import PlaylistWriter
from smartpip.runtime.playlist import open_connections
from smartpip.suggest.corpus import PostgresCorpus
from smartpip.suggest.metrics import SuggestMetrics
from smartpip.suggest.quota import QuotaGate
from smartpip.suggest.service import Suggester, SuggestSettings
from smartpip.youtube import PlaylistClient, YouTubeClient, YouTubeSettings
from store.backup_pg import PgTools
from store.backup_s3 import MIB, S3Settings
from store.migrations import load_migrations
from store.postgres import Database, PostgresSettings, open_database
from store.quota import QuotaUsage
from store.ratelease import RedisLeases
from store.redis import RedisSettings, RedisStore, open_redis
from supervisors import StatusRegistry
from tasks.backup import BackupObserver, Backups, BackupSettings
from tasks.health import HealthMonitor
from tasks.quota import PostgresSaves, RedisCounters, restore_day

__all__ = [
    "Resources",
    "backup_settings",
    "backups_status",
    "open_backups",
    "open_resources",
]


@attrs.frozen
class Resources:
    """Everything built at startup, shared by the HTTP app and the supervised tasks."""

    config: Config
    db: Database
    redis: RedisStore
    http: httpx.AsyncClient
    metrics: Metrics
    supervision: StatusRegistry
    health: HealthMonitor
    tokens: AccessTokens
    sessions: Sessions
    nonces: Nonces
    guards: Guards
    oidc: OidcClient | None
    suggest: Suggester | None
    clock: Callable[[], float] = time.time
    backups: Backups | None = None
    # Playlist consent (issue 16); ``youtube.grants`` is the write half's Grants.
    youtube: Connections | None = None
    #: ``POST /v1/youtube/playlist``; None while the playlist feature is off (no Grants).
    playlist: PlaylistWriter | None = None


def backup_settings(config: Config) -> BackupSettings | None:
    """The backups' settings, or None when no bucket is configured (backups disabled)."""
    if config.backup_s3_bucket is None:
        return None
    s3 = S3Settings(
        bucket=config.backup_s3_bucket,
        prefix=config.backup_s3_prefix,
        region=config.backup_s3_region,
        endpoint_url=config.backup_s3_endpoint_url,
        access_key_id=config.backup_s3_access_key_id,
        secret_access_key=config.backup_s3_secret_access_key,
        sse=config.backup_s3_sse,
        kms_key_id=config.backup_s3_kms_key_id,
        checksums="when_required"
        if config.backup_s3_checksums == "when_required"
        else "when_supported",
        part_size=config.backup_part_size_mb * MIB,
        concurrency=config.backup_upload_concurrency,
    )
    return BackupSettings(
        database_url=config.database_url,
        s3=s3,
        tools=PgTools(pg_dump=config.backup_pg_dump, pg_restore=config.backup_pg_restore),
        retention_days=config.backup_retention_days,
        drill_days=config.backup_drill_days,
    )


def backups_status(config: Config) -> dict[str, object]:
    """Whether backups are enabled and where they go, for ``/ops/supervisors``."""
    if config.backup_s3_bucket is None:
        return {"enabled": False, "reason": "SMARTPIP_BACKUP_S3_BUCKET is not set"}
    return {
        "enabled": True,
        "bucket": config.backup_s3_bucket,
        "prefix": config.backup_s3_prefix,
        "retentionDays": config.backup_retention_days,
        "drillDays": config.backup_drill_days,
    }


def open_backups(config: Config, observer: BackupObserver | None = None) -> Backups | None:
    """The backups (no request is made yet), or None when backups are disabled."""
    settings = backup_settings(config)
    return None if settings is None else Backups(settings, observer=observer)


def postgres_settings(config: Config) -> PostgresSettings:
    """The store's Postgres settings derived from the service configuration."""
    return PostgresSettings(
        url=config.database_url,
        max_size=config.db_pool_size,
        acquire_timeout=config.db_acquire_timeout,
        queue_timeout=config.db_queue_timeout,
        statement_timeout_ms=config.db_statement_timeout_ms,
        # A query may run for its statement timeout; past that plus a margin, stop waiting.
        query_timeout=config.db_statement_timeout_ms / 1000 + 1.0,
    )


def session_policy(config: Config) -> SessionPolicy:
    """Refresh-session lifetimes from the configuration."""
    return SessionPolicy(
        idle=timedelta(days=config.session_idle_days),
        absolute=timedelta(days=config.session_absolute_days),
        reuse_grace=timedelta(seconds=config.refresh_grace_seconds),
    )


def oidc_client(config: Config, http: httpx.AsyncClient, metrics: Metrics) -> OidcClient | None:
    """The OpenID provider client, or None when sign-in is not configured."""
    if config.oidc_client_id is None or config.oidc_client_secret is None:
        return None
    settings = OidcSettings(
        issuer=config.oidc_issuer,
        client_id=config.oidc_client_id,
        client_secret=config.oidc_client_secret,
    )
    return OidcClient(settings, http, on_request=metrics.on_oidc_request)


def suggester(
    config: Config,
    http: httpx.AsyncClient,
    db: Database,
    redis: RedisStore,
    metrics: Metrics,
    clock: Callable[[], float],
) -> Suggester | None:
    """The suggest service, or None when no YouTube key is configured (suggest disabled)."""
    if config.youtube_api_key is None:
        return None
    suggest_metrics = SuggestMetrics(metrics.registry)
    client = YouTubeClient(
        YouTubeSettings(
            api_url=config.youtube_api_url,
            api_key=config.youtube_api_key,
            max_results=config.suggest_max_results,
        ),
        http,
        on_call=suggest_metrics.upstream_call,
    )
    gate = QuotaGate(
        redis,
        daily_budget=config.suggest_daily_budget,
        restore=quota_restorer(db, redis),
        clock=clock,
    )
    settings = SuggestSettings(
        ttl_seconds=config.suggest_ttl_seconds,
        stale_seconds=config.suggest_stale_seconds,
        max_results=config.suggest_max_results,
        wait_seconds=config.suggest_wait_seconds,
        concurrency=config.suggest_concurrency,
        daily_budget=config.suggest_daily_budget,
        weights=config.suggest_weights,
        reserve=config.suggest_reserve,
    )
    corpus = (
        PostgresCorpus(db, days=config.suggest_corpus_days, weights=config.suggest_weights)
        if config.suggest_corpus_days
        else None
    )
    return Suggester(client, redis, gate, suggest_metrics, settings, clock=clock, corpus=corpus)


def quota_restorer(db: Database, redis: RedisStore) -> Callable[[str], Awaitable[object]]:
    """Puts back a Pacific day's quota counter that Redis lost, from Postgres (tasks.quota);
    what the search and playlist reservations call when they find the day's counter missing."""
    counters, saves = RedisCounters(redis), PostgresSaves(db)

    async def restore(day: str) -> QuotaUsage | None:
        return await restore_day(day, counters, saves)

    return restore


def playlist_writer(
    config: Config,
    grants: Grants | None,
    http: httpx.AsyncClient,
    db: Database,
    redis: RedisStore,
    metrics: Metrics,
    clock: Callable[[], float],
) -> PlaylistWriter | None:
    """The playlist write service, or None without a :class:`Grants` (the feature is off)."""
    if grants is None:
        return None
    budget = PlaylistBudget(
        redis,
        BudgetSettings(
            daily_searches=config.suggest_daily_budget,
            share=config.playlist_share,
            user_daily_limit=config.playlist_user_daily_limit,
        ),
        restore=quota_restorer(db, redis),
        clock=clock,
    )
    # The server key is not sent with these calls: they act for the user, with their token.
    settings = YouTubeSettings(api_url=config.youtube_api_url, api_key="")
    return PlaylistWriter(
        grants=grants,
        client=PlaylistClient(settings, http),
        db=db,
        redis=redis,
        budget=budget,
        metrics=PlaylistMetrics(metrics.registry),
        title=config.playlist_title,
    )


@asynccontextmanager
async def open_resources(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    playlist_grants: Grants | None = None,
) -> AsyncIterator[Resources]:
    """Open the Postgres pool, the Redis client, the outbound HTTP client and the metrics.

    Args:
        config: The configuration.
        clock: Wall-clock seconds for suggest's cache freshness and quota day (tests move it).
        playlist_grants: Users' YouTube access tokens for ``POST /v1/youtube/playlist``,
            instead of the consent half's stored grants (tests pass a fake). Without either
            (the playlist feature off), the write is off too.
    """
    metrics = Metrics()
    metrics.set_build(metadata.version("smartpip"), config.build_commit)
    redis_settings = RedisSettings(
        url=config.redis_url,
        prefix=config.redis_prefix,
        connect_timeout=config.redis_connect_timeout,
        command_timeout=config.redis_command_timeout,
    )
    timeout = httpx.Timeout(config.http_timeout, connect=min(2.0, config.http_timeout))
    async with (
        open_database(postgres_settings(config)) as db,
        open_redis(redis_settings) as redis,
        httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
    ):
        health = HealthMonitor(db, redis, load_migrations())
        metrics.watch(db.stats, health.state.up, lambda: health.state.ready)
        backups = open_backups(config, metrics)
        metrics.backup_enabled.set(0 if backups is None else 1)
        tokens = AccessTokens(config.jwt_keys)
        # One checker: the guard reads what logout, reuse detection and deletion write.
        revocations = TokenRevocations(redis)
        oidc = oidc_client(config, http, metrics)
        connections = open_connections(config, db, redis, oidc)
        # The write half's access tokens: the consent half's stored grants (tests pass a fake).
        grants = playlist_grants
        if grants is None and connections is not None:
            grants = connections.grants
        yield Resources(
            config=config,
            db=db,
            redis=redis,
            http=http,
            metrics=metrics,
            supervision=StatusRegistry(),
            health=health,
            tokens=tokens,
            sessions=Sessions(db, tokens, session_policy(config), revocations),
            nonces=Nonces(config.jwt_keys, redis),
            guards=Guards(
                tokens,
                RateLimiter(
                    RedisLeases(redis),
                    metrics.registry,
                    settle_interval=config.rate_limit_settle_ms / 1000,
                ),
                config.trusted_proxies,
                revocations,
            ),
            oidc=oidc,
            suggest=suggester(config, http, db, redis, metrics, clock),
            clock=clock,
            backups=backups,
            youtube=connections,
            playlist=playlist_writer(config, grants, http, db, redis, metrics, clock),
        )
