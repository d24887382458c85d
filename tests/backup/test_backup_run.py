"""A backup end to end against ``rclone serve s3``: dump, upload, verify, manifest, drill."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from store.backup_s3 import S3Settings
from store.errors import StorageError
from tasks.backup import Backups, BackupSettings
from tests.backup.conftest import object_keys

pytestmark = pytest.mark.timeout(120)


async def test_a_nightly_run_uploads_a_verified_dump_with_its_manifest_and_drills_it(
    backups: Backups, sample_db: str, s3_settings: S3Settings, bucket_folder: Path
) -> None:
    summary = await backups.run()

    key = str(summary["key"])
    assert key.startswith(f"smartpip/{backups.dbname}/{backups.dbname}-")
    assert key.endswith("Z.dump")
    assert object_keys(s3_settings) == sorted([key, key + ".manifest.json", key + ".drill.json"])
    manifest = json.loads((bucket_folder / (key + ".manifest.json")).read_text())
    stored = (bucket_folder / key).read_bytes()
    assert manifest["size"] == len(stored) == summary["bytes"]
    assert manifest["rowCounts"]["public.users"] == 200
    assert manifest["rowCounts"]["public.video_history"] == 1000
    assert manifest["pgDumpVersion"].startswith("pg_dump (PostgreSQL)")
    assert manifest["verifiedAt"]
    assert stored[:5] == b"PGDMP"  # the custom format's magic
    drill = json.loads((bucket_folder / (key + ".drill.json")).read_text())
    assert drill["ok"] is True
    assert drill["rows"] == sum(manifest["rowCounts"].values())
    # The drill's scratch database is gone again.
    with psycopg.connect(sample_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (drill["database"],)
        ).fetchone()
    assert row == (0,)
    [entry] = [e.describe() for e in await backups.entries()]
    assert entry["verified"] is True
    assert entry["drill"] == "ok"


async def test_the_manifest_counts_come_from_the_dumped_snapshot(
    backups: Backups, sample_db: str
) -> None:
    summary = await backups.run()
    manifest = await backups.manifest(str(summary["key"]))
    # Restored elsewhere, the dump holds exactly the counted rows.
    restored = await backups.restore(str(summary["key"]), f"{backups.dbname}_restored")
    try:
        url = sample_db.rsplit("/", 1)[0] + "/" + str(restored["into"])
        with psycopg.connect(url) as conn:
            users = conn.execute("SELECT count(*) FROM users").fetchone()
            history = conn.execute("SELECT count(*) FROM video_history").fetchone()
        assert users == (manifest["rowCounts"]["public.users"],)
        assert history == (manifest["rowCounts"]["public.video_history"],)
    finally:
        with psycopg.connect(sample_db, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{restored["into"]}" WITH (FORCE)')


async def test_wrong_credentials_are_named_and_nothing_is_written(
    sample_db: str, s3_settings: S3Settings
) -> None:
    wrong = S3Settings(
        bucket=s3_settings.bucket,
        prefix=s3_settings.prefix,
        region=s3_settings.region,
        endpoint_url=s3_settings.endpoint_url,
        access_key_id=s3_settings.access_key_id,
        secret_access_key="not-the-secret-key-at-all-0000000000000000",
    )
    backups = Backups(BackupSettings(database_url=sample_db, s3=wrong))
    with pytest.raises(StorageError, match="credentials were refused"):
        await backups.run()
    assert object_keys(s3_settings) == []


async def test_a_missing_bucket_is_named(sample_db: str, s3_settings: S3Settings) -> None:
    missing = S3Settings(
        bucket="no-such-bucket-here",
        endpoint_url=s3_settings.endpoint_url,
        region=s3_settings.region,
        access_key_id=s3_settings.access_key_id,
        secret_access_key=s3_settings.secret_access_key,
    )
    backups = Backups(BackupSettings(database_url=sample_db, s3=missing))
    with pytest.raises(StorageError, match="no-such-bucket-here does not exist"):
        await backups.run()
