"""Configuration: parsing, every problem listed, production strictness, redaction, the CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smartpip.cli import main as cli_main
from smartpip.config import Config, ConfigError
from smartpip.playlist.crypto import generate_key
from smartpip.runtime.resources import postgres_settings
from smartpip.suggest.ranking import RankingWeights

STRONG = "k1:" + "s" * 40


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    return caught.value.problems


def test_defaults_match_the_documented_table() -> None:
    config = Config.from_env({})
    assert config.env == "development"
    assert config.bind == "127.0.0.1:8080"
    assert config.redis_command_timeout == 0.25
    assert config.redis_connect_timeout == 0.5
    assert config.drain_seconds == 5.0
    assert config.graceful_timeout == 10.0
    assert config.jwt_keys_generated and len(config.jwt_keys[0].secret) >= 32
    assert [str(n) for n in config.trusted_proxies] == ["127.0.0.1/32", "::1/128"]


def test_database_waits_are_configured_and_reach_the_store() -> None:
    default = postgres_settings(Config.from_env({}))
    assert (default.max_size, default.queue_timeout, default.acquire_timeout) == (10, 5.0, 1.0)
    tuned = postgres_settings(
        Config.from_env({"SMARTPIP_DB_QUEUE_TIMEOUT": "2.5", "SMARTPIP_DB_ACQUIRE_TIMEOUT": "0.5"})
    )
    assert (tuned.queue_timeout, tuned.acquire_timeout) == (2.5, 0.5)
    assert problems({"SMARTPIP_DB_QUEUE_TIMEOUT": "0"})[0].startswith("SMARTPIP_DB_QUEUE_TIMEOUT")


def test_every_problem_is_listed_and_names_its_variable() -> None:
    found = problems(
        {
            "SMARTPIP_BIND": "nowhere",
            "SMARTPIP_DB_POOL_SIZE": "many",
            "SMARTPIP_REDIS_COMMAND_TIMEOUT": "0",
            "SMARTPIP_CORS_ORIGINS": "*",
            "SMARTPIP_TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip",
            "SMARTPIP_ENV": "staging",
            "SMARTPIP_DATABSE_URL": "postgresql://typo",
        }
    )
    joined = "\n".join(found)
    for name in (
        "SMARTPIP_BIND",
        "SMARTPIP_DB_POOL_SIZE",
        "SMARTPIP_REDIS_COMMAND_TIMEOUT",
        "SMARTPIP_CORS_ORIGINS",
        "SMARTPIP_TRUSTED_PROXIES",
        "SMARTPIP_ENV",
        "SMARTPIP_DATABSE_URL",
    ):
        assert name in joined
    assert len(found) == 7


def test_production_refuses_missing_and_weak_secrets() -> None:
    found = problems(
        {
            "SMARTPIP_ENV": "production",
            "SMARTPIP_OPS_TOKEN": "changeme",
            "SMARTPIP_OIDC_ISSUER": "http://accounts.example",
        }
    )
    assert any(p.startswith("SMARTPIP_JWT_KEYS is required") for p in found)
    assert any(p.startswith("SMARTPIP_OPS_TOKEN is weak") for p in found)
    assert any(p.startswith("SMARTPIP_OIDC_ISSUER must be https") for p in found)
    weak_key = problems(
        {
            "SMARTPIP_ENV": "production",
            "SMARTPIP_JWT_KEYS": "a:short",
            "SMARTPIP_SIGN_IN": "disabled",
        }
    )
    assert weak_key == ["SMARTPIP_JWT_KEYS key 'a' is weak: at least 32 bytes"]


def test_production_accepts_strong_secrets_and_rotation_order() -> None:
    config = Config.from_env(
        {
            "SMARTPIP_ENV": "production",
            "SMARTPIP_JWT_KEYS": f"{STRONG},k0:{'t' * 32}",
            "SMARTPIP_SIGN_IN": "disabled",
        }
    )
    assert [k.kid for k in config.jwt_keys] == ["k1", "k0"]
    assert not config.jwt_keys_generated


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "ops"
    secret.write_text("o" * 40 + "\n")
    config = Config.from_env({"SMARTPIP_OPS_TOKEN_FILE": str(secret)})
    assert config.ops_token == "o" * 40
    both = problems({"SMARTPIP_OPS_TOKEN_FILE": str(secret), "SMARTPIP_OPS_TOKEN": "x"})
    assert both == ["SMARTPIP_OPS_TOKEN and SMARTPIP_OPS_TOKEN_FILE are both set; use one"]
    missing = problems({"SMARTPIP_OPS_TOKEN_FILE": str(tmp_path / "absent")})
    assert missing[0].startswith("SMARTPIP_OPS_TOKEN_FILE cannot be read")


PRODUCTION = {"SMARTPIP_ENV": "production", "SMARTPIP_JWT_KEYS": STRONG}
GOOGLE = {
    "SMARTPIP_OIDC_CLIENT_ID": "1234.apps.googleusercontent.com",
    "SMARTPIP_OIDC_CLIENT_SECRET": "c" * 40,
    "SMARTPIP_OIDC_REDIRECT_URIS": "https://abcdefghijklmnop.chromiumapp.org/",
    # Production with sign-in and the playlist on (the default) needs the token keys.
    "SMARTPIP_TOKEN_ENCRYPTION_KEYS": "t1:" + generate_key(),
}


def test_production_refuses_to_run_without_sign_in_unless_told() -> None:
    assert problems(PRODUCTION) == [
        "SMARTPIP_OIDC_CLIENT_ID is required in production: nobody can sign in without it "
        "(set SMARTPIP_SIGN_IN=disabled to run without sign-in)"
    ]
    off = Config.from_env(PRODUCTION | {"SMARTPIP_SIGN_IN": "disabled"})
    assert not off.sign_in_enabled
    on = Config.from_env(PRODUCTION | GOOGLE)
    assert on.sign_in_enabled and on.sign_in == "oidc"
    no_uris = PRODUCTION | GOOGLE | {"SMARTPIP_OIDC_REDIRECT_URIS": ""}
    assert problems(no_uris)[0].startswith("SMARTPIP_OIDC_REDIRECT_URIS is required in production")
    both = problems(PRODUCTION | GOOGLE | {"SMARTPIP_SIGN_IN": "disabled"})
    assert both == ["SMARTPIP_SIGN_IN is disabled but SMARTPIP_OIDC_CLIENT_ID is set; unset one"]
    assert problems({"SMARTPIP_SIGN_IN": "maybe"})[0].startswith("SMARTPIP_SIGN_IN must be one of")
    # Development: sign-in is off until a client is configured, without complaint.
    assert not Config.from_env({}).sign_in_enabled


def test_the_summary_says_what_is_enabled_and_what_is_not() -> None:
    assert Config.from_env({}).summary() == [
        "environment: development",
        "sign-in: disabled (SMARTPIP_OIDC_CLIENT_ID unset)",
        "suggest: disabled (SMARTPIP_YOUTUBE_API_KEY unset)",
        "ops endpoints: disabled (SMARTPIP_OPS_TOKEN unset)",
        "backups: disabled (SMARTPIP_BACKUP_S3_BUCKET unset)",
        "playlist: disabled (sign-in is disabled)",
    ]
    full = Config.from_env(
        PRODUCTION
        | GOOGLE
        | {
            "SMARTPIP_YOUTUBE_API_KEY": "y",
            "SMARTPIP_OPS_TOKEN": "o" * 40,
            "SMARTPIP_BACKUP_S3_BUCKET": "bucket",
        }
    )
    assert full.summary()[:6] == [
        "environment: production",
        "sign-in: enabled (https://accounts.google.com, 1 redirect URI(s))",
        "suggest: enabled",
        "ops endpoints: enabled",
        "backups: enabled (s3://bucket/smartpip/)",
        "playlist: enabled",
    ]
    off = Config.from_env(PRODUCTION | {"SMARTPIP_SIGN_IN": "disabled"})
    assert off.summary()[1] == "sign-in: disabled (SMARTPIP_SIGN_IN=disabled)"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartpip.cli", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_without_sign_in_is_one_line_and_exit_2() -> None:
    result = run_cli("serve", env=PRODUCTION)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "invalid configuration: SMARTPIP_OIDC_CLIENT_ID is required in production: nobody can "
        "sign in without it (set SMARTPIP_SIGN_IN=disabled to run without sign-in)"
    ]


def test_an_unreadable_secret_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    secret = tmp_path / "ops_token"
    secret.write_text("o" * 40)
    secret.chmod(0)
    readable = os.access(secret, os.R_OK)  # root reads anything: then use a directory
    target = tmp_path if readable else secret
    result = run_cli("serve", env={"SMARTPIP_OPS_TOKEN_FILE": str(target)})
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("invalid configuration: SMARTPIP_OPS_TOKEN_FILE cannot be read: ")
    assert ("Is a directory" if readable else "Permission denied") in line


def test_database_url_from_a_file(tmp_path: Path) -> None:
    url = tmp_path / "database_url"
    url.write_text("postgresql://smartpip:pw-from-file@postgres:5432/smartpip\n")
    config = Config.from_env({"SMARTPIP_DATABASE_URL_FILE": str(url)})
    assert config.database_url == "postgresql://smartpip:pw-from-file@postgres:5432/smartpip"
    assert "pw-from-file" not in json.dumps(config.redacted())
    url.write_text("mysql://nope")
    assert problems({"SMARTPIP_DATABASE_URL_FILE": str(url)}) == [
        "SMARTPIP_DATABASE_URL must be a postgresql:// URL"
    ]


def test_malformed_jwt_keys() -> None:
    assert problems({"SMARTPIP_JWT_KEYS": "nokid"}) == [
        "SMARTPIP_JWT_KEYS entries must be kid:secret"
    ]
    assert problems({"SMARTPIP_JWT_KEYS": f"a:{'x' * 32},a:{'y' * 32}"}) == [
        "SMARTPIP_JWT_KEYS repeats the key id 'a'"
    ]
    # Short HMAC keys are refused in every environment (pyjwt warns on them, rightly).
    assert problems({"SMARTPIP_JWT_KEYS": "a:short"}) == [
        "SMARTPIP_JWT_KEYS key 'a' is weak: at least 32 bytes"
    ]


def test_redacted_hides_every_secret() -> None:
    config = Config.from_env(
        {
            "SMARTPIP_JWT_KEYS": STRONG,
            "SMARTPIP_OPS_TOKEN": "ops-secret-value",
            "SMARTPIP_YOUTUBE_API_KEY": "yt-secret-value",
            "SMARTPIP_OIDC_CLIENT_ID": "client",
            "SMARTPIP_OIDC_CLIENT_SECRET": "oidc-secret-value",
            "SMARTPIP_DATABASE_URL": "postgresql://u:db-password@db/smartpip",
        }
    )
    text = json.dumps(config.redacted())
    for secret in (
        "s" * 40,
        "ops-secret-value",
        "yt-secret-value",
        "oidc-secret-value",
        "db-password",
    ):
        assert secret not in text
    assert "k1:<redacted>" in text
    assert "s" * 40 not in repr(config) and "ops-secret-value" not in repr(config)


def test_cli_config_check_prints_redacted_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SMARTPIP_OPS_TOKEN", "ops-secret-value")
    assert cli_main(["config", "check"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "ops endpoints: enabled" in captured.err.splitlines()
    assert out["ops_token"] == "<redacted>"
    assert out["bind"] == "127.0.0.1:8080"


def test_session_and_rate_limit_settings() -> None:
    config = Config.from_env(
        {
            "SMARTPIP_SESSION_IDLE_DAYS": "7",
            "SMARTPIP_SESSION_ABSOLUTE_DAYS": "30",
            "SMARTPIP_RATE_LIMIT_AUTH": "5/10s",
        }
    )
    assert (config.session_idle_days, config.session_absolute_days) == (7, 30)
    assert (config.rate_limit_auth.limit, config.rate_limit_auth.period) == (5, 10)
    assert config.redacted()["rate_limit_auth"] == "5/10s"
    found = problems(
        {
            "SMARTPIP_SESSION_IDLE_DAYS": "60",
            "SMARTPIP_SESSION_ABSOLUTE_DAYS": "30",
            "SMARTPIP_RATE_LIMIT_USER": "lots",
        }
    )
    assert any(p.startswith("SMARTPIP_SESSION_ABSOLUTE_DAYS must not be shorter") for p in found)
    assert any(p.startswith("SMARTPIP_RATE_LIMIT_USER is not a rate") for p in found)


def test_history_providers() -> None:
    assert Config.from_env({}).history_providers == ("youtube", "vimeo", "twitch", "dailymotion")
    assert Config.from_env({"SMARTPIP_HISTORY_PROVIDERS": "YouTube, vimeo"}).history_providers == (
        "youtube",
        "vimeo",
    )
    found = problems({"SMARTPIP_HISTORY_PROVIDERS": "youtube,myspace"})
    assert found[0].startswith("SMARTPIP_HISTORY_PROVIDERS unknown history providers ['myspace']")


def test_invalid_config_exits_2_without_traceback() -> None:
    env = {"PATH": "/usr/bin:/bin", "SMARTPIP_BIND": "bad", "SMARTPIP_DB_POOL_SIZE": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "smartpip.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "SMARTPIP_BIND" in result.stderr and "SMARTPIP_DB_POOL_SIZE" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["--help"], ["serve", "--help"], ["migrate", "--help"], ["config", "check", "--help"]],
)
def test_cli_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(command)
    assert exited.value.code == 0
    assert "usage: smartpip" in capsys.readouterr().out


def test_suggest_settings_defaults_and_overrides() -> None:
    config = Config.from_env({})
    assert (config.suggest_ttl_seconds, config.suggest_stale_seconds) == (1200, 86_400)
    assert (config.suggest_daily_budget, config.suggest_max_results) == (100, 10)
    assert (config.suggest_wait_seconds, config.suggest_concurrency) == (5.0, 4)
    assert config.suggest_stopwords == ()
    assert config.suggest_weights == RankingWeights()
    assert (config.rate_limit_suggest.limit, config.rate_limit_suggest.period) == (30, 60.0)
    config = Config.from_env(
        {
            "SMARTPIP_SUGGEST_TTL_SECONDS": "600",
            "SMARTPIP_SUGGEST_STALE_SECONDS": "2592000",
            "SMARTPIP_SUGGEST_STOPWORDS": "Official, HD,,",
            "SMARTPIP_SUGGEST_WEIGHTS": "views=2, half_life_days=7",
            "SMARTPIP_RATE_LIMIT_SUGGEST": "5/1s",
        }
    )
    assert (config.suggest_ttl_seconds, config.suggest_stale_seconds) == (600, 2_592_000)
    assert config.suggest_stopwords == ("hd", "official")
    assert config.suggest_weights == RankingWeights(views=2.0, half_life_days=7.0)
    assert config.rate_limit_suggest.limit == 5
    assert config.redacted()["suggest_weights"] == {
        "views": 2.0,
        "freshness": 3.0,
        "half_life_days": 7.0,
        "title_match": 2.0,
        "description_match": 0.5,
    }


def test_suggest_settings_out_of_range_are_refused() -> None:
    found = problems(
        {
            "SMARTPIP_SUGGEST_TTL_SECONDS": "599",
            "SMARTPIP_SUGGEST_STALE_SECONDS": "2592001",
            "SMARTPIP_SUGGEST_MAX_RESULTS": "51",
            "SMARTPIP_SUGGEST_STOPWORDS": "lo-fi",
            "SMARTPIP_SUGGEST_WEIGHTS": "views=0,nonsense=1,title_match=x,freshness=inf",
        }
    )
    text = "\n".join(found)
    for name in ("TTL_SECONDS", "STALE_SECONDS", "MAX_RESULTS", "STOPWORDS"):
        assert f"SMARTPIP_SUGGEST_{name}" in text
    assert sum("SMARTPIP_SUGGEST_WEIGHTS" in p for p in found) == 3  # name, number, value
    assert any("30 days" in p or "2592000" in p for p in found)


def test_the_stale_horizon_cannot_be_shorter_than_the_ttl() -> None:
    found = problems(
        {"SMARTPIP_SUGGEST_TTL_SECONDS": "1800", "SMARTPIP_SUGGEST_STALE_SECONDS": "1000"}
    )
    assert found == [
        "SMARTPIP_SUGGEST_STALE_SECONDS must not be shorter than SMARTPIP_SUGGEST_TTL_SECONDS"
    ]


def test_backups_are_off_without_a_bucket_and_read_every_setting_with_one(
    tmp_path: Path,
) -> None:
    assert Config.from_env({}).backup_s3_bucket is None
    secret_file = tmp_path / "secret"
    secret_file.write_text("backup-secret-value\n")
    config = Config.from_env(
        {
            "SMARTPIP_BACKUP_S3_BUCKET": "dumps",
            "SMARTPIP_BACKUP_S3_PREFIX": "prod/",
            "SMARTPIP_BACKUP_S3_REGION": "eu-west-1",
            "SMARTPIP_BACKUP_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "SMARTPIP_BACKUP_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "SMARTPIP_BACKUP_S3_SECRET_ACCESS_KEY_FILE": str(secret_file),
            "SMARTPIP_BACKUP_S3_SSE": "aws:kms",
            "SMARTPIP_BACKUP_S3_KMS_KEY_ID": "alias/backups",
            "SMARTPIP_BACKUP_S3_CHECKSUMS": "when_required",
            "SMARTPIP_BACKUP_RETENTION_DAYS": "90",
            "SMARTPIP_BACKUP_DRILL_DAYS": "1",
        }
    )
    assert config.backup_s3_secret_access_key == "backup-secret-value"
    assert (config.backup_s3_sse, config.backup_s3_checksums) == ("aws:kms", "when_required")
    assert (config.backup_retention_days, config.backup_drill_days) == (90, 1)
    assert "backup-secret-value" not in json.dumps(config.redacted())


def test_backup_settings_are_checked() -> None:
    found = problems(
        {
            "SMARTPIP_BACKUP_RETENTION_DAYS": "7",
            "SMARTPIP_BACKUP_S3_PREFIX": "/no-slash",
            "SMARTPIP_BACKUP_S3_SSE": "rot13",
            "SMARTPIP_BACKUP_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "SMARTPIP_BACKUP_S3_KMS_KEY_ID": "alias/backups",
        }
    )
    assert any(
        p.startswith("SMARTPIP_BACKUP_RETENTION_DAYS must be between 30 and 90") for p in found
    )
    assert any(p.startswith("SMARTPIP_BACKUP_S3_PREFIX") for p in found)
    assert any(p.startswith("SMARTPIP_BACKUP_S3_SSE must be one of") for p in found)
    assert any("must be set together" in p for p in found)
    assert any(p.startswith("SMARTPIP_BACKUP_S3_KMS_KEY_ID needs") for p in found)


def test_rate_limit_settle_interval() -> None:
    assert Config.from_env({}).rate_limit_settle_ms == 250
    assert Config.from_env({"SMARTPIP_RATE_LIMIT_SETTLE_MS": "100"}).rate_limit_settle_ms == 100
    for bad in ("0", "19", "5001", "fast"):
        found = problems({"SMARTPIP_RATE_LIMIT_SETTLE_MS": bad})
        assert any(p.startswith("SMARTPIP_RATE_LIMIT_SETTLE_MS must be") for p in found), found


def test_build_commit_is_a_short_label_value() -> None:
    assert Config.from_env({}).build_commit == "unknown"
    assert Config.from_env({"SMARTPIP_BUILD_COMMIT": "9cd595c"}).build_commit == "9cd595c"
    (problem,) = problems({"SMARTPIP_BUILD_COMMIT": "not a commit; {x}"})
    assert problem.startswith("SMARTPIP_BUILD_COMMIT")


# --- the playlist's consent half (issue 16): SMARTPIP_PLAYLIST, SMARTPIP_TOKEN_ENCRYPTION_KEYS --

TOKEN_KEY = "t1:" + generate_key()


def test_playlist_is_on_by_default_and_disabled_until_everything_is_configured() -> None:
    assert Config.from_env({}).playlist == "on"
    assert not Config.from_env({}).playlist_enabled
    keys = {"SMARTPIP_TOKEN_ENCRYPTION_KEYS": TOKEN_KEY}
    assert not Config.from_env(keys).playlist_enabled  # no sign-in
    google = GOOGLE | keys
    on = Config.from_env(google)
    assert on.playlist_enabled and on.summary()[-1] == "playlist: enabled"
    assert on.token_encryption_keys is not None and on.token_encryption_keys.current.kid == "t1"
    off = Config.from_env(google | {"SMARTPIP_PLAYLIST": "off"})
    assert not off.playlist_enabled
    assert off.summary()[-1] == "playlist: disabled (SMARTPIP_PLAYLIST=off)"
    no_keys = Config.from_env(GOOGLE | {"SMARTPIP_TOKEN_ENCRYPTION_KEYS": ""})
    assert no_keys.summary()[-1] == "playlist: disabled (SMARTPIP_TOKEN_ENCRYPTION_KEYS unset)"
    assert problems({"SMARTPIP_PLAYLIST": "maybe"})[0].startswith("SMARTPIP_PLAYLIST must be")


def test_production_with_the_playlist_on_needs_strong_token_keys() -> None:
    missing = PRODUCTION | GOOGLE | {"SMARTPIP_TOKEN_ENCRYPTION_KEYS": ""}
    [problem] = problems(missing)
    assert problem.startswith("SMARTPIP_TOKEN_ENCRYPTION_KEYS is required in production")
    assert Config.from_env(missing | {"SMARTPIP_PLAYLIST": "off"}).playlist == "off"
    weak = "t0:" + base64.urlsafe_b64encode(bytes(32)).decode()
    [problem] = problems(PRODUCTION | GOOGLE | {"SMARTPIP_TOKEN_ENCRYPTION_KEYS": weak})
    assert problem == "SMARTPIP_TOKEN_ENCRYPTION_KEYS key 't0' is weak: use 32 random bytes"
    # Without sign-in there is no playlist to protect: no key needed.
    assert Config.from_env(PRODUCTION | {"SMARTPIP_SIGN_IN": "disabled"}).playlist == "on"


def test_token_keys_are_parsed_secret_and_redacted(tmp_path: Path) -> None:
    found = problems({"SMARTPIP_TOKEN_ENCRYPTION_KEYS": "t1:QUJD," + TOKEN_KEY + ",t2"})
    assert found == [
        "SMARTPIP_TOKEN_ENCRYPTION_KEYS key 't1' must be 32 bytes (base64url), not 3",
        "SMARTPIP_TOKEN_ENCRYPTION_KEYS entries must be kid:key (kid 1-32 of [A-Za-z0-9._-])",
    ]
    second = "t2:" + generate_key()
    path = tmp_path / "keys"
    path.write_text(f"{second},{TOKEN_KEY}\n")
    config = Config.from_env({"SMARTPIP_TOKEN_ENCRYPTION_KEYS_FILE": str(path)})
    assert config.token_encryption_keys is not None
    assert [k.kid for k in config.token_encryption_keys.keys] == ["t2", "t1"]
    text = json.dumps(config.redacted()) + repr(config)
    assert config.redacted()["token_encryption_keys"] == ["t2:<redacted>", "t1:<redacted>"]
    for spec in (second, TOKEN_KEY):
        assert spec.partition(":")[2] not in text


# --- playlist writes (issue 16, the write) ---------------------------------------------------


def test_playlist_write_settings_defaults_and_overrides() -> None:
    config = Config.from_env({})
    assert (config.playlist_share, config.playlist_user_daily_limit) == (0.05, 5)
    assert config.playlist_title == "Smart PiP"
    config = Config.from_env(
        {
            "SMARTPIP_PLAYLIST_SHARE": "0.2",
            "SMARTPIP_PLAYLIST_USER_DAILY_LIMIT": "20",
            "SMARTPIP_PLAYLIST_TITLE": "Watch later (PiP)",
        }
    )
    assert (config.playlist_share, config.playlist_user_daily_limit) == (0.2, 20)
    assert config.playlist_title == "Watch later (PiP)"


def test_playlist_write_settings_out_of_range_are_refused() -> None:
    found = problems(
        {
            "SMARTPIP_PLAYLIST_SHARE": "0.6",
            "SMARTPIP_PLAYLIST_USER_DAILY_LIMIT": "0",
            "SMARTPIP_PLAYLIST_TITLE": "x" * 151,
        }
    )
    for name in ("SHARE", "USER_DAILY_LIMIT", "TITLE"):
        assert any(f"SMARTPIP_PLAYLIST_{name}" in p for p in found), name
    tab = problems({"SMARTPIP_PLAYLIST_TITLE": "a\tb"})
    assert any("SMARTPIP_PLAYLIST_TITLE" in p for p in tab)


# -- the suggest corpus and reserve (issue 15) ---------------------------------------------------


def test_suggest_reserve_and_corpus_days() -> None:
    defaults = Config.from_env({})
    assert (defaults.suggest_reserve, defaults.suggest_corpus_days) == (20, 30)
    config = Config.from_env({"SMARTPIP_SUGGEST_RESERVE": "0", "SMARTPIP_SUGGEST_CORPUS_DAYS": "7"})
    assert (config.suggest_reserve, config.suggest_corpus_days) == (0, 7)
    # 0 days: no corpus (no writes, no local answers).
    assert Config.from_env({"SMARTPIP_SUGGEST_CORPUS_DAYS": "0"}).suggest_corpus_days == 0
    for name, bad in (
        ("RESERVE", "-1"),
        ("RESERVE", "100001"),
        ("RESERVE", "some"),
        # YouTube's developer policies: API data kept 30 days at most without a refresh.
        ("CORPUS_DAYS", "31"),
        ("CORPUS_DAYS", "-1"),
        ("CORPUS_DAYS", "1.5"),
    ):
        found = problems({f"SMARTPIP_SUGGEST_{name}": bad})
        assert any(p.startswith(f"SMARTPIP_SUGGEST_{name} must be") for p in found), found
