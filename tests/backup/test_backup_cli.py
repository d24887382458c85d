"""``smartpip backup run|list|verify|restore``: JSON on success, one line and a status on error."""

from __future__ import annotations

import json

import psycopg
import pytest

from smartpip.cli import EXIT_CONFIG, EXIT_JOB_FAILED, EXIT_RESTORE_REFUSED
from smartpip.cli import main as cli_main
from store.backup_pg import database_name
from store.backup_s3 import S3Settings
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, sample_db: str, s3_settings: S3Settings, redis_prefix: str
) -> dict[str, str]:
    env = {
        "SMARTPIP_DATABASE_URL": sample_db,
        "SMARTPIP_REDIS_URL": REDIS_URL,
        "SMARTPIP_REDIS_PREFIX": redis_prefix,
        "SMARTPIP_BACKUP_S3_BUCKET": s3_settings.bucket,
        "SMARTPIP_BACKUP_S3_ENDPOINT_URL": str(s3_settings.endpoint_url),
        "SMARTPIP_BACKUP_S3_REGION": "us-east-1",
        "SMARTPIP_BACKUP_S3_ACCESS_KEY_ID": str(s3_settings.access_key_id),
        "SMARTPIP_BACKUP_S3_SECRET_ACCESS_KEY": str(s3_settings.secret_access_key),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("smartpip")]
    assert len(lines) == 1
    return lines[0]


def test_without_a_bucket_backups_are_disabled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SMARTPIP_BACKUP_S3_BUCKET", raising=False)
    assert cli_main(["backup", "list"]) == EXIT_CONFIG
    assert "SMARTPIP_BACKUP_S3_BUCKET is not set" in _one_line_error(capsys)


def test_wrong_credentials_are_one_line(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SMARTPIP_BACKUP_S3_SECRET_ACCESS_KEY", "x" * 40)
    assert cli_main(["backup", "run"]) == EXIT_JOB_FAILED
    assert "credentials were refused" in _one_line_error(capsys)


def test_run_list_verify_and_restore(
    cli_env: dict[str, str], sample_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["backup", "run"]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert ran["outcome"] == "succeeded"

    assert cli_main(["backup", "list"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["verified"] is True
    assert entry["drill"] == "ok"
    assert entry["size"] > 0

    assert cli_main(["backup", "verify"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == entry["key"]

    live = database_name(sample_db)
    assert cli_main(["backup", "restore", entry["key"], "--into", live]) == EXIT_RESTORE_REFUSED
    assert "live database" in _one_line_error(capsys)

    target = f"{live}_cli_restore"
    try:
        assert cli_main(["backup", "restore", entry["key"], "--into", target]) == 0
        assert json.loads(capsys.readouterr().out)["into"] == target
        again = ["backup", "restore", entry["key"], "--into", target]
        assert cli_main(again) == EXIT_RESTORE_REFUSED
        assert "existing database" in _one_line_error(capsys)
        assert cli_main([*again, "--force"]) == 0
        with psycopg.connect(sample_db.rsplit("/", 1)[0] + "/" + target) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone() == (200,)
    finally:
        with psycopg.connect(sample_db, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_verify_of_an_unknown_key_is_one_line(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["backup", "verify", "smartpip/nope.dump"]) == EXIT_JOB_FAILED
    assert "not a complete backup" in _one_line_error(capsys)
