"""The settings service on real Postgres: ``If-Match`` under the row lock, domain errors only."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import trio

from smartpip.http.etags import etag_for, json_body
from smartpip.settings.model import (
    InvalidSettings,
    SettingsPatch,
    SettingsPut,
    canonical_document,
)
from smartpip.settings.service import (
    PreconditionFailed,
    UserGone,
    patch_settings,
    read_settings,
    replace_settings,
)
from store.postgres import Database
from store.settings import DEFAULT_SETTINGS, SettingsRow, lock_settings, upsert_settings
from store.users import upsert_user
from tests.support.polling import eventually

ISS = "https://accounts.google.com"
SAVED = SettingsRow(auto_pip=True, skip_seconds=30, site_flags={"example.com": {"muted": True}})
# A service write that stores SAVED: a replace, or a patch of every field.
Write = Callable[[Database, uuid.UUID, str | None], Awaitable[SettingsRow]]


async def replace_with_saved(db: Database, user_id: uuid.UUID, if_match: str | None) -> SettingsRow:
    return await replace_settings(db, user_id, SettingsPut(SAVED), if_match=if_match)


async def patch_to_saved(db: Database, user_id: uuid.UUID, if_match: str | None) -> SettingsRow:
    patch = SettingsPatch(auto_pip=True, skip_seconds=30, site_flags=SAVED.site_flags)
    return await patch_settings(db, user_id, patch, if_match=if_match)


WRITES = [
    pytest.param(replace_with_saved, id="replace"),
    pytest.param(patch_to_saved, id="patch"),
]


def tag_of(settings: SettingsRow) -> str:
    return etag_for(json_body(canonical_document(settings)))


def count_rows(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> int:
    row = conn.execute("SELECT count(*) FROM settings WHERE user_id = %s", (user_id,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_read_answers_the_defaults_then_what_was_written(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    assert await read_settings(db, user_id) == DEFAULT_SETTINGS
    assert await replace_settings(db, user_id, SettingsPut(SAVED), if_match=None) == SAVED
    assert await read_settings(db, user_id) == SAVED


@pytest.mark.parametrize("write", WRITES)
async def test_refused_write_leaves_no_default_row(db: Database, write: Write) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    with pytest.raises(PreconditionFailed):
        await write(db, user_id, '"not-the-tag"')
    assert await db.run(count_rows, user_id) == 0


@pytest.mark.parametrize("write", WRITES)
async def test_write_checks_if_match_against_the_stored_document(
    db: Database, write: Write
) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    default_tag = tag_of(DEFAULT_SETTINGS)
    assert await write(db, user_id, default_tag) == SAVED
    with pytest.raises(PreconditionFailed):
        await replace_settings(db, user_id, SettingsPut(DEFAULT_SETTINGS), if_match=default_tag)
    saved_tag = tag_of(SAVED)
    for listed in (f'"x", {saved_tag}', f"W/{saved_tag}", "*"):
        assert await write(db, user_id, listed) == SAVED


async def test_a_merge_past_the_limits_writes_nothing(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    await replace_settings(db, user_id, SettingsPut(SAVED), if_match=None)
    too_many = SettingsPatch(site_flags={f"h{i}.example": {} for i in range(200)})
    with pytest.raises(InvalidSettings):
        await patch_settings(db, user_id, too_many, if_match=None)
    assert await read_settings(db, user_id) == SAVED


async def test_a_deleted_user_is_gone(db: Database) -> None:
    stranger = uuid.uuid4()
    with pytest.raises(UserGone):
        await read_settings(db, stranger)
    with pytest.raises(UserGone):
        await replace_settings(db, stranger, SettingsPut(SAVED), if_match=None)
    with pytest.raises(UserGone):
        await patch_settings(db, stranger, SettingsPatch(auto_pip=True), if_match=None)


WAITING_ON_LOCK = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


def count_waiters(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(WAITING_ON_LOCK).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("first_writes", "second_gets"),
    [
        pytest.param(SAVED, PreconditionFailed, id="changed-412"),
        pytest.param(DEFAULT_SETTINGS, None, id="unchanged-written"),
    ],
)
@pytest.mark.parametrize("write", WRITES)
async def test_second_writer_with_the_same_tag_waits_then_compares_the_committed_document(
    db: Database,
    write: Write,
    first_writes: SettingsRow,
    second_gets: type[Exception] | None,
) -> None:
    """The first write of a user (no row yet) holds the lock; the second sees its result."""
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    tag = tag_of(DEFAULT_SETTINGS)
    inside, release = threading.Event(), threading.Event()

    def first_writer(conn: psycopg.Connection[Any]) -> None:
        lock_settings(conn, user_id)  # what a service write does first
        inside.set()
        release.wait(5)
        upsert_settings(conn, user_id, first_writes)

    async def second_is_waiting() -> bool:
        return await db.run(count_waiters) >= 1

    outcomes: dict[str, object] = {}

    async def second() -> None:
        try:
            outcomes["second"] = await write(db, user_id, tag)
        except PreconditionFailed as refused:
            outcomes["second"] = type(refused)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, first_writer)
        await trio.to_thread.run_sync(inside.wait, 5)
        nursery.start_soon(second)
        await eventually(second_is_waiting, within=5)
        release.set()
    if second_gets is None:
        assert outcomes == {"second": SAVED}
        assert await read_settings(db, user_id) == SAVED
    else:
        assert outcomes == {"second": second_gets}
        assert await read_settings(db, user_id) == first_writes
