"""The backup pipelines, each run whole in one worker thread: dump to S3, verify, drill, restore.

They join :mod:`store.backup_pg` and :mod:`store.backup_restore` (the PostgreSQL client
programs) and :mod:`store.backup_s3` (the bucket). :func:`run_cancellable` runs one in a
worker thread so that cancelling the caller (a lost lease, shutdown) terminates
``pg_dump``/``pg_restore`` and aborts the upload, then waits for the thread to end: no
process or upload outlives the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import attrs
import trio

from store.backup_pg import (
    Cancel,
    PgTools,
    check_tools,
    exported_snapshot,
    start_dump,
    url_for_database,
)
from store.backup_restore import create_database, drop_database, restore_stream, table_counts
from store.backup_s3 import S3Settings, read_object, upload_stream
from store.errors import DumpFailed, VerifyFailed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "Uploaded",
    "compare_counts",
    "drill_restore",
    "dump_to_s3",
    "restore_object",
    "run_cancellable",
    "verify_object",
]

T = TypeVar("T")


@attrs.frozen
class Uploaded:
    """A dump that is now an object in the bucket (not yet verified).

    Attributes:
        key: Its key.
        size: Its size in bytes.
        sha256: Its SHA-256 (hex), computed while streaming.
        row_counts: Each table's exact row count in the dumped snapshot.
        pg_dump_version: ``pg_dump --version``.
        server_version: The server's ``server_version_num``.
    """

    key: str
    size: int
    sha256: str
    row_counts: dict[str, int]
    pg_dump_version: str
    server_version: int


def dump_to_s3(
    url: str, tools: PgTools, client: S3Client, s3: S3Settings, key: str, cancel: Cancel
) -> Uploaded:
    """``pg_dump -Fc`` of ``url``'s database streamed to ``key`` (blocking).

    Raises:
        BackupToolError: the client programs are missing or older than the server.
        DumpFailed: pg_dump failed or was cancelled; the upload was aborted, nothing is left.
        StorageError: S3 refused or failed the upload.
        BackupError: the database cannot be reached.
    """
    dump_version, server_version = check_tools(tools, url)
    with exported_snapshot(url) as snapshot:
        reader = start_dump(tools, url, snapshot.snapshot_id, cancel)
        try:
            upload_stream(client, s3, key, reader)
        finally:
            reader.close()
    if not reader.ended:  # the uploader stopped reading early: never call that a backup
        raise DumpFailed(f"the upload of {key} ended before the dump did")
    return Uploaded(
        key=key,
        size=reader.size,
        sha256=reader.sha256,
        row_counts=snapshot.row_counts,
        pg_dump_version=dump_version,
        server_version=server_version,
    )


def _check_sha(key: str, expected: str, got: str, size: int) -> None:
    if got != expected:
        raise VerifyFailed(
            f"{key}: SHA-256 {got[:16]}... of {size} bytes does not match the manifest's "
            f"{expected[:16]}...: the object is corrupted"
        )


def verify_object(
    client: S3Client, s3: S3Settings, tools: PgTools, key: str, sha256: str, cancel: Cancel
) -> int:
    """Download ``key``, check its SHA-256 and read every block with ``pg_restore``.

    Returns:
        Its size in bytes.

    Raises:
        VerifyFailed: the checksum differs or pg_restore cannot read it.
        StorageError: it cannot be downloaded.
    """
    chunks = read_object(client, s3, key, cancelled=lambda: cancel.cancelled)
    got, size = restore_stream(tools, chunks, cancel)
    _check_sha(key, sha256, got, size)
    return size


def compare_counts(expected: dict[str, int], got: dict[str, int]) -> list[str]:
    """The tables whose row counts differ, as ``table: expected -> got`` lines."""
    tables = sorted(set(expected) | set(got))
    return [
        f"{table}: {expected.get(table, 'absent')} -> {got.get(table, 'absent')}"
        for table in tables
        if expected.get(table) != got.get(table)
    ]


def drill_restore(
    url: str,
    client: S3Client,
    s3: S3Settings,
    tools: PgTools,
    key: str,
    sha256: str,
    row_counts: dict[str, int],
    scratch: str,
    cancel: Cancel,
) -> dict[str, int]:
    """Restore ``key`` into the new database ``scratch``, compare row counts, drop it.

    Returns:
        The restored row counts (equal to ``row_counts``).

    Raises:
        VerifyFailed: the restore failed, the checksum differs or a count differs.
        StorageError: it cannot be downloaded.
        BackupError: the scratch database cannot be created.
    """
    create_database(url, scratch)
    try:
        restore_object(client, s3, tools, key, sha256, url_for_database(url, scratch), cancel)
        got = table_counts(url_for_database(url, scratch))
    finally:
        drop_database(url, scratch)
    differences = compare_counts(row_counts, got)
    if differences:
        raise VerifyFailed(f"{key}: restored row counts differ: {'; '.join(differences[:5])}")
    return got


def restore_object(
    client: S3Client,
    s3: S3Settings,
    tools: PgTools,
    key: str,
    sha256: str,
    into: str,
    cancel: Cancel,
    *,
    clean: bool = False,
) -> int:
    """Restore ``key`` into the database ``into`` (streamed), then check its SHA-256.

    Returns:
        The dump's size in bytes.

    Raises:
        VerifyFailed: pg_restore failed, or the checksum differs (the database may hold a
            partial restore then: restore into a new database and drop it on failure).
        StorageError: it cannot be downloaded.
    """
    chunks = read_object(client, s3, key, cancelled=lambda: cancel.cancelled)
    got, size = restore_stream(tools, chunks, cancel, into=into, clean=clean)
    _check_sha(key, sha256, got, size)
    return size


async def run_cancellable(work: Callable[[Cancel], T]) -> T:
    """Run ``work(cancel)`` in a worker thread; cancelling the caller cancels the work.

    On cancellation the processes ``work`` registered are terminated (which makes an upload
    abort) and the thread is waited for, so nothing outlives the call; then ``Cancelled``
    propagates as usual.
    """
    cancel = Cancel()
    finished = False

    async def cancel_when_cancelled() -> NoReturn:
        try:
            await trio.sleep_forever()
        finally:
            if not finished:
                cancel.cancel()

    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_when_cancelled)
        try:
            # Not abandoned on cancel: the thread always finishes (quickly, once cancelled).
            result = await trio.to_thread.run_sync(
                functools.partial(work, cancel), abandon_on_cancel=False
            )
        except Exception as error:  # raised below, outside the nursery (no exception group)
            failure = error
        finally:
            finished = True
            nursery.cancel_scope.cancel()
    if failure is not None:
        if cancel.cancelled:  # the failure is our own cancellation: raise Cancelled instead
            await trio.lowlevel.checkpoint()
        raise failure
    return result
