"""Configuration: every ``SMARTPIP_*`` variable, read once, validated, frozen.

This is the only module that reads the process environment. :meth:`Config.from_env` collects
*every* problem before failing, so an operator fixes a broken deployment in one pass; the CLI
prints the list and exits with status 2, without a traceback.

Secrets (``SMARTPIP_JWT_KEYS``, ``SMARTPIP_OIDC_CLIENT_SECRET``, ``SMARTPIP_YOUTUBE_API_KEY``,
``SMARTPIP_OPS_TOKEN``, ``SMARTPIP_TOKEN_ENCRYPTION_KEYS``, and ``SMARTPIP_DATABASE_URL``, which
may hold a password) may instead be given as ``NAME_FILE`` pointing at a file (Docker
secrets); setting both is an error.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from smartpip.envreader import (
    HISTORY_PROVIDERS,
    EnvReader,
    check_bind,
    check_origin,
    check_pg_url,
    check_prefix,
    check_redis_url,
    check_url,
    checked,
    parse_network,
)
from smartpip.http.clientip import Network
from smartpip.http.ratelimit import Policy, parse_policy
from smartpip.http.tokens import JwtKey
from smartpip.playlist.crypto import Keyring, parse_keyring
from smartpip.suggest.normalize import parse_stopwords
from smartpip.suggest.ranking import RankingWeights
from supervisors import Schedule
from tasks.catalogue import JOBS, parse_schedule

__all__ = ["Config", "ConfigError"]

# Why 32: HS256 keys shorter than the hash output (32 bytes) weaken the MAC (RFC 7518 3.2).
MIN_SECRET_BYTES = 32
# Values people leave in example files; refused in production whatever their length.
WEAK_SECRETS = frozenset(
    {"changeme", "change-me", "secret", "password", "dev", "development", "test"}
)

# Why these rates: sign-in takes 2-3 auth calls and a refresh every 15 minutes; 20 a minute
# per address leaves room for a household behind one NAT while stopping credential spraying.
DEFAULT_AUTH_LIMIT = "20/1m"
# Per signed-in user, across all authenticated routes that attach it.
DEFAULT_USER_LIMIT = "300/1m"
# Per signed-in user, on routes that change data (history, settings): a video a second is
# already far more than anyone watches.
DEFAULT_WRITES_LIMIT = "60/1m"
# Per signed-in user on /v1/suggest: the extension asks once per page or video change; 30 a
# minute is far above that and keeps one account from walking the cache's misses.
DEFAULT_SUGGEST_LIMIT = "30/1m"
# YouTube's policy: data fetched with the server key may be kept at most 30 days.
MAX_SUGGEST_STALE_SECONDS = 30 * 86_400


class ConfigError(Exception):
    """The environment does not describe a valid configuration; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"invalid configuration: {problems[0]}")
        else:
            super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@attrs.frozen
class Config:
    """The service's whole configuration. Build it with :meth:`from_env`."""

    env: str = "development"
    bind: str = "127.0.0.1:8080"
    database_url: str = "postgresql://localhost/smartpip"
    db_pool_size: int = 10
    db_statement_timeout_ms: int = 5000
    db_acquire_timeout: float = 1.0
    db_queue_timeout: float = 5.0
    redis_url: str = "redis://localhost:6379/0"
    redis_prefix: str = "smartpip:"
    redis_connect_timeout: float = 0.5
    redis_command_timeout: float = 0.25
    jwt_keys: tuple[JwtKey, ...] = ()
    jwt_keys_generated: bool = False
    oidc_issuer: str = "https://accounts.google.com"
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = attrs.field(default=None, repr=False)
    oidc_redirect_uris: tuple[str, ...] = ()
    sign_in: str = "oidc"
    youtube_api_key: str | None = attrs.field(default=None, repr=False)
    youtube_api_url: str = "https://www.googleapis.com/youtube/v3"
    ops_token: str | None = attrs.field(default=None, repr=False)
    trusted_proxies: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    cors_origins: tuple[str, ...] = ()
    session_idle_days: int = 30
    session_absolute_days: int = 90
    refresh_grace_seconds: float = 10.0
    rate_limit_auth: Policy = attrs.field(factory=lambda: parse_policy("auth", DEFAULT_AUTH_LIMIT))
    rate_limit_user: Policy = attrs.field(factory=lambda: parse_policy("user", DEFAULT_USER_LIMIT))
    rate_limit_writes: Policy = attrs.field(
        factory=lambda: parse_policy("writes", DEFAULT_WRITES_LIMIT)
    )
    rate_limit_suggest: Policy = attrs.field(
        factory=lambda: parse_policy("suggest", DEFAULT_SUGGEST_LIMIT)
    )
    rate_limit_settle_ms: int = 250
    history_providers: tuple[str, ...] = HISTORY_PROVIDERS
    suggest_ttl_seconds: int = 1200
    suggest_stale_seconds: int = 86_400
    suggest_daily_budget: int = 100
    suggest_max_results: int = 10
    suggest_wait_seconds: float = 5.0
    suggest_concurrency: int = 4
    suggest_stopwords: tuple[str, ...] = ()
    suggest_weights: RankingWeights = attrs.field(factory=RankingWeights)
    suggest_reserve: int = 20
    suggest_corpus_days: int = 30
    warm_share: float = 0.3
    warm_reserve: int = 10
    warm_max_per_run: int = 10
    # Playlist writes (issue 16, the write): their share of the daily units, per-user cap, title.
    playlist_share: float = 0.05
    playlist_user_daily_limit: int = 5
    playlist_title: str = "Smart PiP"
    replica_name: str | None = None
    job_lease_seconds: float = 30.0
    jobs_paused: tuple[str, ...] = ()
    jobs_schedule: tuple[tuple[str, Schedule], ...] = ()
    session_retention_days: int = 30
    audit_retention_days: int = 90
    cleanup_batch_size: int = 1000
    cleanup_max_batches: int = 100
    request_timeout: float = 30.0
    body_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    send_timeout: float = 10.0
    max_connections: int = 1000
    drain_seconds: float = 5.0
    graceful_timeout: float = 10.0
    backup_s3_bucket: str | None = None
    backup_s3_prefix: str = "smartpip/"
    backup_s3_region: str | None = None
    backup_s3_endpoint_url: str | None = None
    backup_s3_access_key_id: str | None = None
    backup_s3_secret_access_key: str | None = attrs.field(default=None, repr=False)
    backup_s3_sse: str = "AES256"
    backup_s3_kms_key_id: str | None = None
    backup_s3_checksums: str = "when_supported"
    backup_part_size_mb: int = 16
    backup_upload_concurrency: int = 4
    backup_retention_days: int = 35
    backup_drill_days: int = 7
    backup_pg_dump: str = "pg_dump"
    backup_pg_restore: str = "pg_restore"
    health_interval: float = 2.0
    http_timeout: float = 5.0
    log_level: str = "info"
    log_format: str = "json"
    build_commit: str = "unknown"
    # The playlist feature's consent half (issue 16): on/off and the refresh-token keyring.
    playlist: str = "on"
    token_encryption_keys: Keyring | None = attrs.field(default=None, repr=False)

    @property
    def production(self) -> bool:
        """Whether the strict production checks apply."""
        return self.env == "production"

    @property
    def sign_in_enabled(self) -> bool:
        """Whether Google sign-in (OIDC) is configured and not switched off."""
        return self.sign_in != "disabled" and self.oidc_client_id is not None

    @property
    def playlist_enabled(self) -> bool:
        """Whether the playlist feature runs: switched on, sign-in configured, keys set."""
        return (
            self.playlist == "on"
            and self.sign_in_enabled
            and self.oidc_client_secret is not None
            and self.token_encryption_keys is not None
        )

    def summary(self) -> list[str]:
        """One line per optional part of the service: enabled, or disabled and why."""
        lines = [f"environment: {self.env}"]
        if self.sign_in_enabled:
            uris = len(self.oidc_redirect_uris)
            lines.append(f"sign-in: enabled ({self.oidc_issuer}, {uris} redirect URI(s))")
        elif self.sign_in == "disabled":
            lines.append("sign-in: disabled (SMARTPIP_SIGN_IN=disabled)")
        else:
            lines.append("sign-in: disabled (SMARTPIP_OIDC_CLIENT_ID unset)")
        lines.append(
            "suggest: enabled"
            if self.youtube_api_key is not None
            else "suggest: disabled (SMARTPIP_YOUTUBE_API_KEY unset)"
        )
        lines.append(
            "ops endpoints: enabled"
            if self.ops_token is not None
            else "ops endpoints: disabled (SMARTPIP_OPS_TOKEN unset)"
        )
        lines.append(
            f"backups: enabled (s3://{self.backup_s3_bucket}/{self.backup_s3_prefix})"
            if self.backup_s3_bucket is not None
            else "backups: disabled (SMARTPIP_BACKUP_S3_BUCKET unset)"
        )
        lines.append(f"playlist: {self._playlist_summary()}")
        return lines

    def _playlist_summary(self) -> str:
        if self.playlist_enabled:
            return "enabled"
        if self.playlist == "off":
            return "disabled (SMARTPIP_PLAYLIST=off)"
        if not self.sign_in_enabled:
            return "disabled (sign-in is disabled)"
        return "disabled (SMARTPIP_TOKEN_ENCRYPTION_KEYS unset)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read, validate and freeze the configuration.

        Args:
            environ: the variables to read; the process environment when omitted.

        Raises:
            ConfigError: listing every problem found, each naming its variable.
        """
        reader = EnvReader(dict(os.environ if environ is None else environ))
        r = reader
        env = r.choice("ENV", "development", ("development", "production"))
        bind = r.get("BIND", "127.0.0.1:8080", check_bind)
        values: dict[str, Any] = {
            "env": env,
            "bind": bind,
            "database_url": _database_url(r),
            "db_pool_size": r.number("DB_POOL_SIZE", 10, int, 1, 200),
            "db_statement_timeout_ms": r.number("DB_STATEMENT_TIMEOUT_MS", 5000, int, 100, 600_000),
            "db_acquire_timeout": r.number("DB_ACQUIRE_TIMEOUT", 1.0, float, 0.05, 60.0),
            "db_queue_timeout": r.number("DB_QUEUE_TIMEOUT", 5.0, float, 0.05, 60.0),
            "redis_url": r.get("REDIS_URL", "redis://localhost:6379/0", check_redis_url),
            "redis_prefix": r.get("REDIS_PREFIX", "smartpip:", check_prefix),
            "redis_connect_timeout": r.number("REDIS_CONNECT_TIMEOUT", 0.5, float, 0.01, 30.0),
            "redis_command_timeout": r.number("REDIS_COMMAND_TIMEOUT", 0.25, float, 0.01, 30.0),
            "oidc_issuer": r.get("OIDC_ISSUER", "https://accounts.google.com", check_url),
            "oidc_client_id": r.optional("OIDC_CLIENT_ID"),
            "oidc_client_secret": r.secret("OIDC_CLIENT_SECRET"),
            "oidc_redirect_uris": r.listing("OIDC_REDIRECT_URIS", checked(check_url)),
            "sign_in": r.choice("SIGN_IN", "oidc", SIGN_IN_CHOICES),
            "youtube_api_key": r.secret("YOUTUBE_API_KEY"),
            "youtube_api_url": r.get(
                "YOUTUBE_API_URL", "https://www.googleapis.com/youtube/v3", check_url
            ),
            "ops_token": r.secret("OPS_TOKEN"),
            "trusted_proxies": r.listing(
                "TRUSTED_PROXIES", parse_network, default="127.0.0.1/32,::1/128"
            ),
            "cors_origins": r.listing("CORS_ORIGINS", checked(check_origin)),
            "session_idle_days": r.number("SESSION_IDLE_DAYS", 30, int, 1, 365),
            "session_absolute_days": r.number("SESSION_ABSOLUTE_DAYS", 90, int, 1, 3650),
            "refresh_grace_seconds": r.number("REFRESH_GRACE_SECONDS", 10.0, float, 0.0, 300.0),
            "rate_limit_auth": r.policy("RATE_LIMIT_AUTH", "auth", DEFAULT_AUTH_LIMIT),
            "rate_limit_user": r.policy("RATE_LIMIT_USER", "user", DEFAULT_USER_LIMIT),
            "rate_limit_writes": r.policy("RATE_LIMIT_WRITES", "writes", DEFAULT_WRITES_LIMIT),
            "rate_limit_suggest": r.policy("RATE_LIMIT_SUGGEST", "suggest", DEFAULT_SUGGEST_LIMIT),
            # 20 ms to 5 s: below, the settle loop itself becomes the load; above, leased
            # units live long enough (twice this) to loosen the limit (RateLimiter's bound).
            "rate_limit_settle_ms": r.number("RATE_LIMIT_SETTLE_MS", 250, int, 20, 5000),
            "history_providers": r.providers("HISTORY_PROVIDERS"),
            "suggest_ttl_seconds": r.number("SUGGEST_TTL_SECONDS", 1200, int, 600, 1800),
            "suggest_stale_seconds": r.number(
                "SUGGEST_STALE_SECONDS", 86_400, int, 600, MAX_SUGGEST_STALE_SECONDS
            ),
            "suggest_daily_budget": r.number("SUGGEST_DAILY_BUDGET", 100, int, 0, 100_000),
            "suggest_max_results": r.number("SUGGEST_MAX_RESULTS", 10, int, 1, 50),
            # At most 20 s: a flight gives up after 25 s (SuggestSettings.flight_seconds).
            "suggest_wait_seconds": r.number("SUGGEST_WAIT_SECONDS", 5.0, float, 0.5, 20.0),
            "suggest_concurrency": r.number("SUGGEST_CONCURRENCY", 4, int, 1, 64),
            "suggest_stopwords": _stopwords(r),
            "suggest_weights": _weights(r),
            # The corpus (issue 15): searches kept for queries asked more than once today,
            # and how long fetched videos answer locally (0: no corpus; at most 30 days,
            # YouTube's limit on keeping API data without refreshing it).
            "suggest_reserve": r.number("SUGGEST_RESERVE", 20, int, 0, 100_000),
            "suggest_corpus_days": r.number("SUGGEST_CORPUS_DAYS", 30, int, 0, 30),
            "warm_share": r.number("WARM_SHARE", 0.3, float, 0.0, 1.0),
            "warm_reserve": r.number("WARM_RESERVE", 10, int, 0, 100_000),
            "warm_max_per_run": r.number("WARM_MAX_PER_RUN", 10, int, 0, 1000),
            # Playlist writes: at most half the day's units, so searches keep the rest.
            "playlist_share": r.number("PLAYLIST_SHARE", 0.05, float, 0.0, 0.5),
            "playlist_user_daily_limit": r.number("PLAYLIST_USER_DAILY_LIMIT", 5, int, 1, 1000),
            "playlist_title": r.get("PLAYLIST_TITLE", "Smart PiP", _check_playlist_title),
            "replica_name": r.get("REPLICA_NAME", "", _check_replica_name) or None,
            "job_lease_seconds": r.number("JOB_LEASE_SECONDS", 30.0, float, 3.0, 600.0),
            "jobs_paused": r.listing("JOBS_PAUSED", _known_job),
            "jobs_schedule": r.listing("JOBS_SCHEDULE", _job_schedule),
            # Retentions of the cleanup job (tasks/cleanup.py): at least a day, at most ten
            # years; history retention is each user's own choice (settings).
            "session_retention_days": r.number("SESSION_RETENTION_DAYS", 30, int, 1, 3650),
            "audit_retention_days": r.number("AUDIT_RETENTION_DAYS", 90, int, 1, 3650),
            "cleanup_batch_size": r.number("CLEANUP_BATCH_SIZE", 1000, int, 1, 100_000),
            "cleanup_max_batches": r.number("CLEANUP_MAX_BATCHES", 100, int, 1, 10_000),
            "request_timeout": r.number("REQUEST_TIMEOUT", 30.0, float, 1.0, 600.0),
            "body_timeout": r.number("BODY_TIMEOUT", 10.0, float, 0.5, 300.0),
            "keepalive_timeout": r.number("KEEPALIVE_TIMEOUT", 5.0, float, 0.5, 300.0),
            "send_timeout": r.number("SEND_TIMEOUT", 10.0, float, 0.5, 300.0),
            "max_connections": r.number("MAX_CONNECTIONS", 1000, int, 1, 100_000),
            "drain_seconds": r.number("DRAIN_SECONDS", 5.0, float, 0.0, 300.0),
            "graceful_timeout": r.number("GRACEFUL_TIMEOUT", 10.0, float, 0.0, 600.0),
            **_backup_settings(r),
            "health_interval": r.number("HEALTH_INTERVAL", 2.0, float, 0.1, 300.0),
            "http_timeout": r.number("HTTP_TIMEOUT", 5.0, float, 0.1, 120.0),
            "log_level": r.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            "log_format": r.choice("LOG_FORMAT", "json", ("json", "console")),
            # The commit the image was built from, for smartpip_build_info (the Dockerfile
            # or the deploy sets it); a label value, so bounded to a short token.
            "build_commit": r.get("BUILD_COMMIT", "unknown", _check_replica_name),
        }
        raw_keys = r.secret("JWT_KEYS")
        keys = _parse_jwt_keys(raw_keys, r) if raw_keys is not None else ()
        values["jwt_keys_generated"] = False
        if not keys:
            if env == "production" and raw_keys is None:
                r.problem("JWT_KEYS", "is required in production (comma-separated kid:secret)")
            # Development only: a random key per process; tokens do not survive a restart.
            keys = (JwtKey("dev", secrets.token_bytes(MIN_SECRET_BYTES)),)
            values["jwt_keys_generated"] = True
        values["jwt_keys"] = keys
        _playlist_settings(values, r)
        if env == "production":
            _production_checks(values, r)
        if values["session_absolute_days"] < values["session_idle_days"]:
            r.problem(
                "SESSION_ABSOLUTE_DAYS", "must not be shorter than SMARTPIP_SESSION_IDLE_DAYS"
            )
        if values["suggest_stale_seconds"] < values["suggest_ttl_seconds"]:
            r.problem(
                "SUGGEST_STALE_SECONDS", "must not be shorter than SMARTPIP_SUGGEST_TTL_SECONDS"
            )
        for name, limit in (
            ("SUGGEST_WAIT_SECONDS", "suggest_wait_seconds"),
            ("BODY_TIMEOUT", "body_timeout"),
        ):
            # The deadline must leave room for the longest legitimate wait inside a request.
            if values["request_timeout"] <= values[limit]:
                r.problem("REQUEST_TIMEOUT", f"must be longer than SMARTPIP_{name}")
        if (values["oidc_client_id"] is None) != (values["oidc_client_secret"] is None):
            r.problem("OIDC_CLIENT_ID", "and SMARTPIP_OIDC_CLIENT_SECRET must be set together")
        _sign_in_checks(values, r)
        r.unknown_variables()
        if r.problems:
            raise ConfigError(r.problems)
        return cls(**values)

    def redacted(self) -> dict[str, object]:
        """The effective configuration as plain values, with every secret hidden."""
        out: dict[str, object] = {}
        for field in attrs.fields(Config):
            value = getattr(self, field.name)
            if field.name == "jwt_keys":
                value = [f"{k.kid}:<redacted>" for k in self.jwt_keys]
            elif field.name == "token_encryption_keys":
                keys = self.token_encryption_keys
                value = None if keys is None else [f"{k.kid}:<redacted>" for k in keys.keys]
            elif field.name in {
                "oidc_client_secret",
                "youtube_api_key",
                "ops_token",
                "backup_s3_secret_access_key",
            }:
                value = None if value is None else "<redacted>"
            elif field.name in {"database_url", "redis_url"}:
                value = _redact_url(value)
            elif field.name == "jobs_schedule":
                value = {name: schedule.describe() for name, schedule in self.jobs_schedule}
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            elif isinstance(value, Policy):
                value = f"{value.limit}/{value.period:g}s"
            elif isinstance(value, RankingWeights):
                value = attrs.asdict(value)
            out[field.name] = value
        return out


_REPLICA_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _check_replica_name(value: str) -> str | None:
    if _REPLICA_NAME.fullmatch(value):
        return None
    return "must be 1-64 characters of [A-Za-z0-9._-]"


def _check_playlist_title(value: str) -> str | None:
    # YouTube's limit is 150 characters; control characters would be refused by YouTube.
    if value.strip() and len(value) <= 150 and value.isprintable():
        return None
    return "must be 1-150 printable characters"


def _known_job(name: str) -> str:
    if name not in JOBS:
        raise ValueError(f"no job is called {name!r} (jobs: {', '.join(sorted(JOBS)) or 'none'})")
    return name


def _job_schedule(item: str) -> tuple[str, Schedule]:
    """``name=every 10m`` or ``name=daily 03:30 UTC``."""
    name, sep, text = item.partition("=")
    if not sep:
        raise ValueError("entries must be name=schedule")
    return _known_job(name.strip()), parse_schedule(text)


# SMARTPIP_BACKUP_S3_SSE, case-insensitive, to the header value S3 expects.
_SSE = {"aes256": "AES256", "aws:kms": "aws:kms", "none": "none"}
# Why 30-90 days: the product plan's retention window; the default leaves a month and a
# few days so that a month-old problem can still be restored from.
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 30, 90


def _check_prefix_path(value: str) -> str | None:
    if value.startswith("/") or not value.endswith("/") or len(value) > 200:
        return "must be a key prefix like smartpip/ (no leading /, ending with /)"
    return None


def _backup_settings(r: EnvReader) -> dict[str, Any]:
    """``SMARTPIP_BACKUP_*``: the bucket, credentials, encryption, retention, drill, tools."""
    values: dict[str, Any] = {
        "backup_s3_bucket": r.optional("BACKUP_S3_BUCKET"),
        "backup_s3_prefix": r.get("BACKUP_S3_PREFIX", "smartpip/", _check_prefix_path),
        "backup_s3_region": r.optional("BACKUP_S3_REGION"),
        "backup_s3_endpoint_url": r.get("BACKUP_S3_ENDPOINT_URL", "", check_url) or None,
        "backup_s3_access_key_id": r.secret("BACKUP_S3_ACCESS_KEY_ID"),
        "backup_s3_secret_access_key": r.secret("BACKUP_S3_SECRET_ACCESS_KEY"),
        "backup_s3_sse": _SSE[r.choice("BACKUP_S3_SSE", "aes256", tuple(_SSE))],
        "backup_s3_kms_key_id": r.optional("BACKUP_S3_KMS_KEY_ID"),
        "backup_s3_checksums": r.choice(
            "BACKUP_S3_CHECKSUMS", "when_supported", ("when_supported", "when_required")
        ),
        "backup_part_size_mb": r.number("BACKUP_PART_SIZE_MB", 16, int, 5, 512),
        "backup_upload_concurrency": r.number("BACKUP_UPLOAD_CONCURRENCY", 4, int, 1, 16),
        "backup_retention_days": r.number(
            "BACKUP_RETENTION_DAYS", 35, int, MIN_RETENTION_DAYS, MAX_RETENTION_DAYS
        ),
        "backup_drill_days": r.number("BACKUP_DRILL_DAYS", 7, int, 1, 90),
        "backup_pg_dump": r.optional("BACKUP_PG_DUMP") or "pg_dump",
        "backup_pg_restore": r.optional("BACKUP_PG_RESTORE") or "pg_restore",
    }
    if (values["backup_s3_access_key_id"] is None) != (
        values["backup_s3_secret_access_key"] is None
    ):
        r.problem(
            "BACKUP_S3_ACCESS_KEY_ID",
            "and SMARTPIP_BACKUP_S3_SECRET_ACCESS_KEY must be set together (or neither: "
            "the standard AWS credential chain)",
        )
    if values["backup_s3_kms_key_id"] is not None and values["backup_s3_sse"] != "aws:kms":
        r.problem("BACKUP_S3_KMS_KEY_ID", "needs SMARTPIP_BACKUP_S3_SSE=aws:kms")
    return values


def _database_url(r: EnvReader) -> str:
    """``SMARTPIP_DATABASE_URL``, or ``SMARTPIP_DATABASE_URL_FILE`` when it holds a password."""
    value = r.secret("DATABASE_URL")
    if value is None:
        return "postgresql://localhost/smartpip"
    error = check_pg_url(value)
    if error is not None:
        r.problem("DATABASE_URL", error)
        return "postgresql://localhost/smartpip"
    return value


def _parse_jwt_keys(raw: str, r: EnvReader) -> tuple[JwtKey, ...]:
    keys: list[JwtKey] = []
    for item in (part.strip() for part in raw.split(",")):
        kid, sep, secret = item.partition(":")
        if not sep or not kid or not secret:
            r.problem("JWT_KEYS", "entries must be kid:secret")
            continue
        if any(k.kid == kid for k in keys):
            r.problem("JWT_KEYS", f"repeats the key id {kid!r}")
            continue
        if len(secret.encode()) < MIN_SECRET_BYTES:
            r.problem("JWT_KEYS", f"key {kid!r} is weak: at least {MIN_SECRET_BYTES} bytes")
            continue
        keys.append(JwtKey(kid, secret.encode()))
    return tuple(keys)


def _stopwords(r: EnvReader) -> tuple[str, ...]:
    raw = r.optional("SUGGEST_STOPWORDS")
    if raw is None:
        return ()
    try:
        return tuple(sorted(parse_stopwords(raw)))
    except ValueError as error:
        r.problem("SUGGEST_STOPWORDS", str(error))
        return ()


def _weights(r: EnvReader) -> RankingWeights:
    """``SMARTPIP_SUGGEST_WEIGHTS``: ``name=number`` pairs overriding the ranking defaults."""
    raw = r.optional("SUGGEST_WEIGHTS")
    if raw is None:
        return RankingWeights()
    names = {field.name for field in attrs.fields(RankingWeights)}
    values: dict[str, float] = {}
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            r.problem(
                "SUGGEST_WEIGHTS", f"entries must be name=number with a name among {sorted(names)}"
            )
            continue
        try:
            values[name] = float(number)
        except ValueError:
            r.problem("SUGGEST_WEIGHTS", f"{name} is not a number")
    try:
        return RankingWeights(**values)
    except ValueError as error:
        r.problem("SUGGEST_WEIGHTS", str(error))
        return RankingWeights()


# SMARTPIP_SIGN_IN: "oidc" (the default) signs users in with the OIDC provider (Google);
# "disabled" runs without sign-in, which production accepts only when said explicitly.
SIGN_IN_CHOICES = ("oidc", "disabled")


def _sign_in_checks(values: dict[str, Any], r: EnvReader) -> None:
    configured = values["oidc_client_id"] is not None
    if values["sign_in"] == "disabled":
        if configured:
            r.problem("SIGN_IN", "is disabled but SMARTPIP_OIDC_CLIENT_ID is set; unset one")
        return
    if values["env"] != "production":
        return  # development: sign-in is simply off until a client is configured
    if configured and not values["oidc_redirect_uris"]:
        r.problem(
            "OIDC_REDIRECT_URIS",
            "is required in production with SMARTPIP_OIDC_CLIENT_ID "
            "(the extensions' redirect URIs)",
        )
    if not configured:
        r.problem(
            "OIDC_CLIENT_ID",
            "is required in production: nobody can sign in without it "
            "(set SMARTPIP_SIGN_IN=disabled to run without sign-in)",
        )


def _playlist_settings(values: dict[str, Any], r: EnvReader) -> None:
    """``SMARTPIP_PLAYLIST`` and ``SMARTPIP_TOKEN_ENCRYPTION_KEYS`` (the consent half).

    In production, with the feature on and sign-in configured, a missing or placeholder key
    stops startup: the feature would otherwise be silently off, or its tokens weakly sealed.
    """
    values["playlist"] = r.choice("PLAYLIST", "on", ("on", "off"))
    raw = r.secret("TOKEN_ENCRYPTION_KEYS")
    keyring: Keyring | None = None
    if raw is not None:
        keyring, problems = parse_keyring(raw)
        for problem in problems:
            r.problem("TOKEN_ENCRYPTION_KEYS", problem)
    values["token_encryption_keys"] = keyring
    if values["env"] != "production" or values["playlist"] == "off":
        return
    if values["sign_in"] == "disabled" or values["oidc_client_id"] is None:
        return  # no sign-in, no playlist (reported by the sign-in checks)
    if raw is None:
        r.problem(
            "TOKEN_ENCRYPTION_KEYS",
            "is required in production with SMARTPIP_PLAYLIST=on (comma-separated "
            "kid:key, each key 32 random bytes in base64url), or set SMARTPIP_PLAYLIST=off",
        )
    elif keyring is not None:
        for key in keyring.keys:
            if key.weak:
                r.problem("TOKEN_ENCRYPTION_KEYS", f"key {key.kid!r} is weak: use 32 random bytes")


def _weak(secret: str | bytes) -> bool:
    raw = secret.encode() if isinstance(secret, str) else secret
    return len(raw) < MIN_SECRET_BYTES or raw.decode(errors="replace").lower() in WEAK_SECRETS


def _production_checks(values: dict[str, Any], r: EnvReader) -> None:
    for key in values.get("jwt_keys", ()):
        if key.secret.decode(errors="replace").lower() in WEAK_SECRETS:
            r.problem("JWT_KEYS", f"key {key.kid!r} is a placeholder value")
    for name in ("ops_token", "oidc_client_secret"):
        value = values[name]
        if value is not None and _weak(value):
            r.problem(name.upper(), f"is weak: at least {MIN_SECRET_BYTES} characters")
    if urlsplit(values["oidc_issuer"]).scheme != "https":
        r.problem("OIDC_ISSUER", "must be https in production")
    if urlsplit(values["youtube_api_url"]).scheme != "https":
        r.problem("YOUTUBE_API_URL", "must be https in production")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":<redacted>@", 1)
    return parts._replace(netloc=netloc).geturl()
