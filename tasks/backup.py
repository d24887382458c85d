"""Backups of the service's database: nightly dump to S3, verify, retention, restore drill.

What a backup is: a ``pg_dump -Fc`` object **and its manifest**. The manifest is written last,
after the dump was uploaded and verified (downloaded, SHA-256 checked, every block read by
``pg_restore``); an object without a manifest is not a backup (a dump that failed, or one
being written) and nothing treats it as one. Keys, manifests and drill records:
:mod:`tasks.backup_model`.

The job (:func:`backup_job`, a fenced lease job: once a night across replicas) checks its
fencing token right before each write that marks something (the manifest, the drill record)
and before retention deletes, so a replica that lost the night to another never writes.
Retention deletes the dumps older than the retention days (by the time in their key), with
their manifests and drill records, but never the newest verified backup.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from store.backup import (
    Uploaded,
    drill_restore,
    dump_to_s3,
    restore_object,
    run_cancellable,
    verify_object,
)
from store.backup_pg import check_tools, database_name, url_for_database
from store.backup_restore import create_database, database_exists, drop_database
from store.backup_s3 import (
    check_bucket,
    delete_objects,
    get_json,
    list_objects,
    make_client,
    put_json,
)
from store.errors import BackupError, VerifyFailed
from supervisors import JobBody, JobRun, utc_now
from tasks.backup_model import (
    DRILL_SUFFIX,
    DUMP_SUFFIX,
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    STAMP_FORMAT,
    BackupEntry,
    BackupObserver,
    BackupSettings,
    NoObserver,
    RestoreRefused,
    iso,
    parse_iso,
    stamp_of,
)

__all__ = [
    "BackupEntry",
    "BackupObserver",
    "BackupSettings",
    "Backups",
    "RestoreRefused",
    "backup_job",
]

logger = logging.getLogger(__name__)

Fence = Callable[[], Awaitable[None]]


async def _no_fence() -> None:
    return None


class Backups:
    """Backups of one database to one bucket (see the module docstring).

    Every blocking step runs through :func:`store.backup.run_cancellable`: one worker thread
    at a time, and cancelling the caller stops ``pg_dump``/``pg_restore`` and the transfer.
    """

    def __init__(
        self,
        settings: BackupSettings,
        *,
        observer: BackupObserver | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.observer: BackupObserver = observer or NoObserver()
        self.clock = clock
        self.client = make_client(settings.s3)
        self.dbname = database_name(settings.database_url)

    @property
    def folder(self) -> str:
        """The key prefix of this database's backups."""
        return f"{self.settings.s3.prefix}{self.dbname}/"

    def key_for(self, at: dt.datetime) -> str:
        """The dump's key for a backup started at ``at``."""
        return f"{self.folder}{self.dbname}-{at.astimezone(dt.UTC).strftime(STAMP_FORMAT)}.dump"

    async def _in_thread(self, work: Callable[[], Any]) -> Any:
        return await run_cancellable(lambda _cancel: work())

    async def preflight(self) -> None:
        """Check the bucket and the client programs (for operators, before a run).

        Raises:
            StorageError: the bucket is missing or the credentials are refused.
            BackupToolError: pg_dump or pg_restore is missing or older than the server.
        """
        s3, tools, url = self.settings.s3, self.settings.tools, self.settings.database_url
        await self._in_thread(lambda: check_bucket(self.client, s3))
        await self._in_thread(lambda: check_tools(tools, url))

    async def run(self, fence: Fence = _no_fence) -> dict[str, object]:
        """Dump, upload, verify, write the manifest, apply retention, drill when due.

        Args:
            fence: Awaited right before each write that marks something (the manifest, the
                drill record) and before retention deletes; raises ``FencedOut`` when this
                replica no longer holds the period.

        Returns:
            A summary for the job's log line.

        Raises:
            BackupError: a step failed (the dump is then not a backup: no manifest).
        """
        s3, tools, url = self.settings.s3, self.settings.tools, self.settings.database_url
        started = self.clock()
        began = time.monotonic()
        key = self.key_for(started)
        await self._in_thread(lambda: check_bucket(self.client, s3))
        uploaded: Uploaded = await run_cancellable(
            lambda cancel: dump_to_s3(url, tools, self.client, s3, key, cancel)
        )
        finished = self.clock()
        try:
            await run_cancellable(
                lambda cancel: verify_object(self.client, s3, tools, key, uploaded.sha256, cancel)
            )
        except VerifyFailed:
            await self._in_thread(lambda: delete_objects(self.client, s3, [key]))
            raise
        manifest = {
            "format": MANIFEST_FORMAT,
            "key": key,
            "database": self.dbname,
            "size": uploaded.size,
            "sha256": uploaded.sha256,
            "rowCounts": uploaded.row_counts,
            "pgDumpVersion": uploaded.pg_dump_version,
            "serverVersion": uploaded.server_version,
            "startedAt": iso(started),
            "finishedAt": iso(finished),
            "verifiedAt": iso(self.clock()),
        }
        await fence()
        await self._in_thread(lambda: put_json(self.client, s3, key + MANIFEST_SUFFIX, manifest))
        seconds = time.monotonic() - began
        self.observer.on_backup(size=uploaded.size, seconds=seconds)
        summary: dict[str, object] = {"key": key, "bytes": uploaded.size}
        await fence()
        summary["pruned"] = len(await self.prune())
        entries = await self.entries()
        if self._drill_due(entries):
            summary["drill"] = await self._drill_logged(key, fence)
        summary["seconds"] = round(seconds, 3)
        return summary

    def _drill_due(self, entries: list[BackupEntry]) -> bool:
        drills = [parse_iso(e.drill.get("at")) for e in entries if e.drill is not None]
        last = max((at for at in drills if at is not None), default=None)
        if last is None:
            return True
        return self.clock() - last >= dt.timedelta(days=self.settings.drill_days)

    async def _drill_logged(self, key: str, fence: Fence) -> str:
        try:
            await self.drill(key, fence)
        except VerifyFailed as error:
            logger.error("backup restore drill of %s failed: %s", key, error)
            return "failed"
        return "ok"

    async def entries(self) -> list[BackupEntry]:
        """Every dump of this database in the bucket, newest first, with manifest and drill.

        Raises:
            StorageError: the bucket cannot be listed or read.
        """
        s3 = self.settings.s3
        objects = await self._in_thread(lambda: list_objects(self.client, s3))
        names = {obj.key for obj in objects if obj.key.startswith(self.folder)}
        entries = []
        for obj in objects:
            at = stamp_of(obj.key)
            if at is None or not obj.key.endswith(DUMP_SUFFIX) or obj.key not in names:
                continue
            manifest = drill = None
            if obj.key + MANIFEST_SUFFIX in names:
                manifest = await self._in_thread(
                    functools.partial(get_json, self.client, s3, obj.key + MANIFEST_SUFFIX)
                )
            if obj.key + DRILL_SUFFIX in names:
                drill = await self._in_thread(
                    functools.partial(get_json, self.client, s3, obj.key + DRILL_SUFFIX)
                )
            entries.append(BackupEntry(obj.key, at, obj.size, manifest, drill))
        return sorted(entries, key=lambda e: e.at, reverse=True)

    async def manifest(self, key: str | None = None) -> Mapping[str, Any]:
        """The manifest of ``key`` (default: the newest complete backup).

        Raises:
            BackupError: there is none (not a complete backup, or no backup at all).
        """
        if key is None:
            complete = [e for e in await self.entries() if e.manifest is not None]
            if not complete:
                raise BackupError(
                    f"no complete backup under s3://{self.settings.s3.bucket}/{self.folder}"
                )
            key = complete[0].key
        s3 = self.settings.s3
        manifest = await self._in_thread(lambda: get_json(self.client, s3, key + MANIFEST_SUFFIX))
        if manifest is None:
            raise BackupError(f"{key} has no manifest: it is not a complete backup")
        return dict(manifest)

    async def verify(self, key: str | None = None) -> dict[str, object]:
        """Download a backup (default: the newest), check its SHA-256, read it with pg_restore.

        Raises:
            VerifyFailed: it does not check out.
            BackupError: no such complete backup.
        """
        manifest = await self.manifest(key)
        s3, tools = self.settings.s3, self.settings.tools
        size = await run_cancellable(
            lambda cancel: verify_object(
                self.client, s3, tools, str(manifest["key"]), str(manifest["sha256"]), cancel
            )
        )
        return {"key": manifest["key"], "size": size, "sha256": manifest["sha256"], "ok": True}

    async def drill(self, key: str | None = None, fence: Fence = _no_fence) -> dict[str, object]:
        """Restore a backup into a scratch database, compare row counts, drop it; record it.

        Raises:
            VerifyFailed: the restore or the counts failed (recorded as a failed drill).
            BackupError: no such complete backup, or no scratch database could be made.
        """
        manifest = await self.manifest(key)
        key = str(manifest["key"])
        s3, tools, url = self.settings.s3, self.settings.tools, self.settings.database_url
        at = self.clock()
        scratch = f"{self.dbname[:30]}_drill_{at.strftime(STAMP_FORMAT).lower()}"
        began = time.monotonic()
        record: dict[str, object] = {"key": key, "at": iso(at), "database": scratch}
        try:
            counts = await run_cancellable(
                lambda cancel: drill_restore(
                    url,
                    self.client,
                    s3,
                    tools,
                    key,
                    str(manifest["sha256"]),
                    dict(manifest["rowCounts"]),
                    scratch,
                    cancel,
                )
            )
        except VerifyFailed as error:
            record.update(ok=False, error=str(error), seconds=time.monotonic() - began)
            self.observer.on_drill(ok=False, seconds=time.monotonic() - began)
            await fence()
            await self._in_thread(lambda: put_json(self.client, s3, key + DRILL_SUFFIX, record))
            raise
        seconds = time.monotonic() - began
        record.update(ok=True, seconds=round(seconds, 3), rows=sum(counts.values()))
        self.observer.on_drill(ok=True, seconds=seconds)
        await fence()
        await self._in_thread(lambda: put_json(self.client, s3, key + DRILL_SUFFIX, record))
        return record

    async def prune(self, now: dt.datetime | None = None) -> list[str]:
        """Delete the dumps older than the retention (with their manifests and drill records),
        always keeping the newest complete backup.

        Returns:
            The deleted keys.
        """
        s3 = self.settings.s3
        now = self.clock() if now is None else now
        cutoff = now - dt.timedelta(days=self.settings.retention_days)
        objects = await self._in_thread(lambda: list_objects(self.client, s3))
        keys = [obj.key for obj in objects if obj.key.startswith(self.folder)]
        manifests = sorted(k for k in keys if k.endswith(DUMP_SUFFIX + MANIFEST_SUFFIX))
        newest = manifests[-1].removesuffix(MANIFEST_SUFFIX) if manifests else None
        doomed = []
        for key in keys:
            at = stamp_of(key)
            dump = key[: key.index(DUMP_SUFFIX) + len(DUMP_SUFFIX)] if at is not None else None
            if at is not None and at < cutoff and dump != newest:
                doomed.append(key)
        if doomed:
            await self._in_thread(lambda: delete_objects(self.client, s3, doomed))
            logger.info("backup retention deleted %d objects older than %s", len(doomed), cutoff)
        return doomed

    async def restore(self, key: str, into: str, *, force: bool = False) -> dict[str, object]:
        """Restore the complete backup ``key`` into the database ``into``.

        A new database is created by default; restoring over an existing database (the live
        one included) needs ``force`` and drops its objects first (``pg_restore --clean``).

        Raises:
            RestoreRefused: ``into`` exists (or is the live database) and not ``force``.
            VerifyFailed: the restore or the checksum failed (a new database is dropped).
            BackupError: ``key`` is not a complete backup.
        """
        manifest = await self.manifest(key)
        url = self.settings.database_url
        s3, tools = self.settings.s3, self.settings.tools
        live = into == self.dbname
        exists = await self._in_thread(lambda: database_exists(url, into))
        if (live or exists) and not force:
            what = "the live database" if live else "an existing database"
            raise RestoreRefused(f"{into} is {what}: restore into a new name, or use --force")
        target = url_for_database(url, into)
        if not exists:
            await self._in_thread(lambda: create_database(url, into))
        began = time.monotonic()
        try:
            size = await run_cancellable(
                lambda cancel: restore_object(
                    self.client,
                    s3,
                    tools,
                    key,
                    str(manifest["sha256"]),
                    target,
                    cancel,
                    clean=exists,
                )
            )
        except BaseException:
            if not exists:
                with trio.CancelScope(shield=True):
                    await self._in_thread(lambda: drop_database(url, into))
            raise
        return {"key": key, "into": into, "size": size, "seconds": time.monotonic() - began}


def backup_job(backups: Backups, fence: Callable[[JobRun], Awaitable[None]]) -> JobBody:
    """The ``backup`` job's body: one backup per period, its writes fenced by ``run``'s lease.

    Args:
        backups: The backups.
        fence: Checks the run's fencing token (``tasks.claims.fenced`` with the database).
    """

    async def body(run: JobRun) -> Mapping[str, object]:
        return await backups.run(lambda: fence(run))

    return body
