"""Backup fixtures: one ``rclone serve s3`` for the session, a bucket per test, sample rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from store.backup_pg import PgTools
from store.backup_s3 import MIN_PART_SIZE, S3Settings, make_client
from tasks.backup import Backups, BackupSettings
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server, start_s3_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``rclone serve s3`` on a free loopback port, its data in a temporary folder."""
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3_settings(s3_server: S3Server) -> S3Settings:
    """A fresh, empty bucket on the test server (SigV4 with the server's keys)."""
    settings = S3Settings(
        bucket=f"bk-{uuid.uuid4().hex[:16]}",
        prefix="smartpip/",
        region="us-east-1",
        endpoint_url=s3_server.endpoint_url,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        # The smallest part S3 allows, so that a few MiB make a multipart upload.
        part_size=MIN_PART_SIZE,
        concurrency=2,
    )
    make_client(settings).create_bucket(Bucket=settings.bucket)
    return settings


@pytest.fixture
def bucket_folder(s3_server: S3Server, s3_settings: S3Settings) -> Path:
    """Where rclone keeps the test bucket's objects (as plain files)."""
    return s3_server.data / s3_settings.bucket


INSERT_USERS = """
INSERT INTO users (oidc_iss, oidc_sub)
SELECT 'urn:test', 'user-' || n FROM generate_series(1, %s) AS n
"""
INSERT_HISTORY = """
INSERT INTO video_history (user_id, provider, video_id, title, url, watched_at)
SELECT u.id, 'youtube', 'v' || n, 'title ' || n, 'https://www.youtube.com/watch?v=v' || n,
       now() - make_interval(mins => n)
FROM users u CROSS JOIN generate_series(1, 5) AS n
"""


@pytest.fixture
def sample_db(pg_url: str) -> str:
    """The test database with 200 users and 5 history rows each."""
    with psycopg.connect(pg_url) as conn:
        conn.execute(INSERT_USERS, (200,))
        conn.execute(INSERT_HISTORY)
    return pg_url


@pytest.fixture
def backups(sample_db: str, s3_settings: S3Settings) -> Backups:
    """Backups of the sample database into the test bucket, with the real client programs."""
    return Backups(BackupSettings(database_url=sample_db, s3=s3_settings, tools=PgTools()))


def object_keys(settings: S3Settings) -> list[str]:
    """Every key in the bucket (straight from S3, not through the code under test)."""
    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    ).client("s3", endpoint_url=settings.endpoint_url)
    reply = client.list_objects_v2(Bucket=settings.bucket)
    return sorted(item["Key"] for item in reply.get("Contents", []))


def fake_tool(folder: Path, name: str, body: str) -> str:
    """A shell script standing in for a client program; ``--version`` answers like v15."""
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "'
        + name
        + ' (PostgreSQL) 15.4"; exit 0; fi\n'
        + body
        + "\n"
    )
    path.chmod(0o755)
    return str(path)


def stored_files(folder: Path) -> list[str]:
    """The names of the files rclone keeps under ``folder`` (temporary upload parts too)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file())
