"""A backup end to end against ``rclone serve s3``: dump, upload, verify, manifest, drill."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from smartpip.metrics import Metrics
from store.backup_s3 import S3Settings, make_client
from store.errors import StorageError, VerifyFailed
from supervisors import utc_now
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
    wrong = attrs.evolve(
        s3_settings, secret_access_key="not-the-secret-key-at-all-0000000000000000"
    )
    backups = Backups(BackupSettings(database_url=sample_db, s3=wrong))
    with pytest.raises(StorageError, match="credentials were refused"):
        await backups.run()
    assert object_keys(s3_settings) == []


async def test_a_missing_bucket_is_named(sample_db: str, s3_settings: S3Settings) -> None:
    missing = attrs.evolve(s3_settings, bucket="no-such-bucket-here")
    backups = Backups(BackupSettings(database_url=sample_db, s3=missing))
    with pytest.raises(StorageError, match="no-such-bucket-here does not exist"):
        await backups.run()


class _Seen:
    def __init__(self) -> None:
        self.backups: list[int] = []
        self.drills: list[bool] = []

    def on_backup(self, *, size: int, seconds: float) -> None:
        self.backups.append(size)

    def on_drill(self, *, ok: bool, seconds: float) -> None:
        self.drills.append(ok)


async def test_the_drill_runs_again_only_after_its_interval(
    sample_db: str, s3_settings: S3Settings
) -> None:
    now = utc_now()
    current = [now]

    def clock() -> dt.datetime:
        return current[0]

    seen = _Seen()
    backups = Backups(
        BackupSettings(database_url=sample_db, s3=s3_settings, drill_days=7),
        observer=seen,
        clock=clock,
    )
    drills = []
    for at in (now, now + dt.timedelta(days=1), now + dt.timedelta(days=8)):
        current[0] = at
        drills.append((await backups.run()).get("drill"))

    assert drills == ["ok", None, "ok"]
    assert seen.drills == [True, True]
    assert len(seen.backups) == 3


async def test_a_drill_whose_counts_differ_fails_and_is_recorded(
    backups: Backups, s3_settings: S3Settings, bucket_folder: Path
) -> None:
    seen = _Seen()
    backups.observer = seen
    key = str((await backups.run())["key"])
    manifest_file = bucket_folder / (key + ".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest["rowCounts"]["public.users"] += 1  # a dump that lost a row would look like this
    make_client(s3_settings).put_object(  # through S3: rclone keeps its own idea of sizes
        Bucket=s3_settings.bucket, Key=key + ".manifest.json", Body=json.dumps(manifest).encode()
    )

    with pytest.raises(VerifyFailed, match=r"public\.users: 201 -> 200"):
        await backups.drill(key)

    assert seen.drills == [True, False]
    record = json.loads((bucket_folder / (key + ".drill.json")).read_text())
    assert record["ok"] is False
    [entry] = await backups.entries()
    assert entry.describe()["drill"] == "failed"


def test_the_service_metrics_take_backup_results() -> None:
    metrics = Metrics()
    metrics.on_backup(size=1234, seconds=2.5)
    metrics.on_drill(ok=False, seconds=9.0)
    text = metrics.render().decode()
    assert "backup_size_bytes 1234.0" in text
    assert "backup_duration_seconds 2.5" in text
    assert "backup_drill_success 0.0" in text
    assert "backup_last_success_timestamp_seconds 0.0" not in text


def _record_writes(backups: Backups) -> list[dict[str, str]]:
    """The headers of every request that creates an object (PutObject, CreateMultipartUpload)."""
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        creates = (request.method == "PUT" and "partNumber=" not in request.url) or (
            request.method == "POST" and request.url.endswith("?uploads")
        )
        if creates:
            sent.append(
                {
                    k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                    for k, v in request.headers.items()
                }
            )

    backups.client.meta.events.register("before-send.s3", capture)
    return sent


async def test_encryption_and_checksums_are_requested_by_default(backups: Backups) -> None:
    sent = _record_writes(backups)
    await backups.run()
    assert len(sent) == 3  # the dump, its manifest, its drill record
    assert all(h.get("x-amz-server-side-encryption") == "AES256" for h in sent)
    assert all(any(key.startswith("x-amz-checksum-") for key in h) for h in sent)


async def test_sse_and_checksums_can_be_turned_off_for_stores_that_refuse_them(
    sample_db: str, s3_settings: S3Settings
) -> None:
    plain = attrs.evolve(s3_settings, sse="none", checksums="when_required")
    backups = Backups(BackupSettings(database_url=sample_db, s3=plain))
    sent = _record_writes(backups)
    await backups.run()
    assert len(sent) == 3
    for headers in sent:
        assert not [key for key in headers if key.startswith("x-amz-server-side-encryption")]
        assert not [key for key in headers if key.startswith("x-amz-checksum-")]
    assert (await backups.verify())["ok"] is True
