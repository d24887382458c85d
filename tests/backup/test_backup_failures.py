"""What is never called a backup: a pg_dump that dies, a cancelled run, a corrupted object."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import trio

from store.backup_pg import PgTools
from store.backup_s3 import S3Settings
from store.errors import BackupToolError, DumpFailed, VerifyFailed
from supervisors import utc_now
from tasks.backup import Backups, BackupSettings
from tests.backup.conftest import fake_tool, object_keys, stored_files
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(120)

LATER = utc_now() + dt.timedelta(hours=1)

# pg_dump dies after writing part of a real dump: a few KB (one PUT) or, padded past the 5 MiB
# part size, a multipart upload of three parts.
DIES_EARLY = 'pg_dump "$@" | head -c 3000\nexit 1'
DIES_LATE = '{ pg_dump "$@"; head -c 11534336 /dev/zero; }\nexit 1'


@pytest.mark.parametrize("script", [DIES_EARLY, DIES_LATE], ids=["single-put", "multipart"])
async def test_a_pg_dump_that_dies_mid_stream_leaves_no_object_and_keeps_older_backups(
    backups: Backups,
    sample_db: str,
    s3_settings: S3Settings,
    bucket_folder: Path,
    tmp_path: Path,
    script: str,
) -> None:
    await backups.run()
    before = object_keys(s3_settings)
    dying = Backups(
        BackupSettings(
            database_url=sample_db,
            s3=s3_settings,
            tools=PgTools(pg_dump=fake_tool(tmp_path, "pg_dump", script)),
        ),
        clock=lambda: LATER,
    )

    with pytest.raises(DumpFailed, match="pg_dump exited with status 1"):
        await dying.run()

    assert object_keys(s3_settings) == before
    # Nor a half-written multipart upload in the store's folder.
    assert stored_files(bucket_folder) == sorted(Path(k).name for k in before)


async def test_cancelling_a_run_terminates_pg_dump_and_aborts_the_upload(
    sample_db: str, s3_settings: S3Settings, bucket_folder: Path, tmp_path: Path
) -> None:
    pid_file, written = tmp_path / "pid", tmp_path / "written"
    # Writes two parts' worth (the upload is under way), then hangs like a stuck pg_dump.
    script = f"echo $$ > {pid_file}\nhead -c 11534336 /dev/zero\ntouch {written}\nexec sleep 300"
    tools = PgTools(pg_dump=fake_tool(tmp_path, "pg_dump", script))
    backups = Backups(BackupSettings(database_url=sample_db, s3=s3_settings, tools=tools))
    outcome: list[str] = []

    async def run() -> None:
        await backups.run()
        outcome.append("returned")  # pragma: no cover - the run is cancelled first

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            with trio.fail_after(60):
                await wait_until(written.exists, interval=0.05)
            scope.cancel()

    assert scope.cancelled_caught
    assert outcome == []
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(pid, 0)
    assert object_keys(s3_settings) == []
    assert stored_files(bucket_folder) == []  # the uploaded parts were discarded too


async def test_verify_catches_a_corrupted_object(backups: Backups, bucket_folder: Path) -> None:
    summary = await backups.run()
    assert (await backups.verify())["ok"] is True
    stored = bucket_folder / str(summary["key"])
    data = bytearray(stored.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # same size, different bytes
    stored.write_bytes(bytes(data))

    with pytest.raises(VerifyFailed):
        await backups.verify(str(summary["key"]))


async def test_a_missing_pg_dump_is_named(
    sample_db: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    tools = PgTools(pg_dump=str(tmp_path / "no-such-pg_dump"))
    backups = Backups(BackupSettings(database_url=sample_db, s3=s3_settings, tools=tools))
    with pytest.raises(BackupToolError, match="pg_dump not found"):
        await backups.run()
    assert object_keys(s3_settings) == []


async def test_a_pg_dump_older_than_the_server_is_refused(
    sample_db: str, s3_settings: S3Settings, tmp_path: Path
) -> None:
    old = tmp_path / "pg_dump"
    old.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 12.9"\n')
    old.chmod(0o755)
    backups = Backups(
        BackupSettings(database_url=sample_db, s3=s3_settings, tools=PgTools(pg_dump=str(old)))
    )
    with pytest.raises(BackupToolError, match="pg_dump 12 is older than the server"):
        await backups.run()
    assert object_keys(s3_settings) == []
