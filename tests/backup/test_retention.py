"""Retention: only backups past the retention days go, with their manifests and drill records."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from store.backup_s3 import S3Settings, make_client
from supervisors import utc_now
from tasks.backup import Backups, BackupSettings
from tests.backup.conftest import object_keys

pytestmark = pytest.mark.timeout(60)


def _put_backup(backups: Backups, at: dt.datetime, *, manifest: bool = True) -> str:
    """A small stand-in backup (dump, manifest, drill record) dated ``at``."""
    client, s3 = make_client(backups.settings.s3), backups.settings.s3
    key = backups.key_for(at)
    client.put_object(Bucket=s3.bucket, Key=key, Body=b"PGDMP stand-in")
    if manifest:
        body = json.dumps({"key": key, "sha256": "0" * 64, "verifiedAt": at.isoformat()})
        client.put_object(Bucket=s3.bucket, Key=key + ".manifest.json", Body=body.encode())
        client.put_object(Bucket=s3.bucket, Key=key + ".drill.json", Body=b'{"ok": true}')
    return key


def _backups(sample_db: str, s3_settings: S3Settings, days: int) -> Backups:
    return Backups(BackupSettings(database_url=sample_db, s3=s3_settings, retention_days=days))


async def test_retention_deletes_only_what_is_past_it(
    sample_db: str, s3_settings: S3Settings
) -> None:
    backups = _backups(sample_db, s3_settings, 35)
    now = utc_now()
    old = [_put_backup(backups, now - dt.timedelta(days=d)) for d in (36, 50, 90)]
    old.append(_put_backup(backups, now - dt.timedelta(days=40), manifest=False))  # a failed one
    kept = [_put_backup(backups, now - dt.timedelta(days=d)) for d in (0, 1, 34)]
    client = make_client(s3_settings)
    foreign = ["smartpip/other-db/other-db-20200101T000000Z.dump", "smartpip/notes.txt"]
    for key in foreign:
        client.put_object(Bucket=s3_settings.bucket, Key=key, Body=b"not ours")

    deleted = await backups.prune(now)

    expected_gone = {
        k + suffix for k in old[:3] for suffix in ("", ".manifest.json", ".drill.json")
    } | {old[3]}
    assert set(deleted) == expected_gone
    remaining = object_keys(s3_settings)
    assert not set(remaining) & expected_gone
    for key in kept:
        assert {key, key + ".manifest.json", key + ".drill.json"} <= set(remaining)
    assert set(foreign) <= set(remaining)


async def test_retention_never_deletes_the_newest_complete_backup(
    sample_db: str, s3_settings: S3Settings
) -> None:
    backups = _backups(sample_db, s3_settings, 30)
    now = utc_now()
    older = _put_backup(backups, now - dt.timedelta(days=70))
    newest = _put_backup(backups, now - dt.timedelta(days=60))
    unfinished = _put_backup(backups, now - dt.timedelta(days=45), manifest=False)

    await backups.prune(now)

    assert object_keys(s3_settings) == sorted(
        [newest, newest + ".manifest.json", newest + ".drill.json"]
    )
    assert older not in object_keys(s3_settings)
    assert unfinished not in object_keys(s3_settings)
