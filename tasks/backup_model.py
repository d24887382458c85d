"""What backups are in the bucket: keys, manifests, drill records, settings (no I/O here).

Keys, under the prefix: ``<prefix><db>/<db>-<YYYYmmddTHHMMSSZ>.dump`` for the dump, plus
``.manifest.json`` (written last: what makes the dump a backup) and ``.drill.json`` (its last
restore drill). The time in the key is the backup's UTC start; retention reads it from there.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from store.backup_pg import PgTools
from store.backup_s3 import S3Settings
from store.errors import BackupError

__all__ = [
    "DRILL_SUFFIX",
    "DUMP_SUFFIX",
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "STAMP_FORMAT",
    "BackupEntry",
    "BackupObserver",
    "BackupSettings",
    "NoObserver",
    "RestoreRefused",
    "iso",
    "parse_iso",
    "stamp_of",
]

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"
DRILL_SUFFIX = ".drill.json"
_KEY = re.compile(r"-(\d{8}T\d{6}Z)\.dump(\.manifest\.json|\.drill\.json)?$")
MANIFEST_FORMAT = 1


class RestoreRefused(BackupError):
    """A restore that would overwrite a database without ``--force``."""


class BackupObserver(Protocol):
    """Where results go (the service's metrics)."""

    def on_backup(self, *, size: int, seconds: float) -> None:
        """A backup was uploaded, verified and its manifest written."""

    def on_drill(self, *, ok: bool, seconds: float) -> None:
        """A restore drill ended."""


class NoObserver:
    """An observer that ignores everything (tests, the CLI)."""

    def on_backup(self, *, size: int, seconds: float) -> None:
        pass

    def on_drill(self, *, ok: bool, seconds: float) -> None:
        pass


@attrs.frozen
class BackupSettings:
    """What to back up, where, and how long to keep it.

    Attributes:
        database_url: The service's database.
        s3: The bucket.
        tools: ``pg_dump`` and ``pg_restore``.
        retention_days: Dumps older than this are deleted (30-90 in the configuration).
        drill_days: A restore drill runs when the last one is older than this.
    """

    database_url: str
    s3: S3Settings
    tools: PgTools = attrs.field(factory=PgTools)
    retention_days: int = 35
    drill_days: float = 7.0


@attrs.frozen
class BackupEntry:
    """One dump in the bucket, with its manifest (None: not a complete backup) and drill."""

    key: str
    at: dt.datetime
    size: int
    manifest: Mapping[str, Any] | None
    drill: Mapping[str, Any] | None

    def describe(self) -> dict[str, object]:
        """For ``smartpip backup list``."""
        drill = self.drill
        return {
            "key": self.key,
            "time": self.at.isoformat(),
            "size": self.size,
            "verified": self.manifest is not None and bool(self.manifest.get("verifiedAt")),
            "drill": None if drill is None else ("ok" if drill.get("ok") else "failed"),
            "drillAt": None if drill is None else drill.get("at"),
        }


def stamp_of(key: str) -> dt.datetime | None:
    match = _KEY.search(key)
    if match is None:
        return None
    return dt.datetime.strptime(match[1], STAMP_FORMAT).replace(tzinfo=dt.UTC)


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
