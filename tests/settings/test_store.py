"""The settings query functions and the locked read-check-write of ``write_settings``."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest
import trio

from smartpip.http.etags import etag_for
from smartpip.http.problems import ApiError
from smartpip.settings.routes import canonical_body, write_settings
from store.postgres import Database
from store.settings import (
    DEFAULT_SETTINGS,
    SettingsRow,
    UserGone,
    lock_settings,
    select_settings,
    upsert_settings,
)
from store.users import upsert_user
from tests.support.polling import eventually

ISS = "https://accounts.google.com"
SAVED = SettingsRow(auto_pip=True, skip_seconds=30, site_flags={"example.com": {"muted": True}})


def count_rows(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> int:
    row = conn.execute("SELECT count(*) FROM settings WHERE user_id = %s", (user_id,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_defaults_without_a_row(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    assert await db.run(select_settings, user_id) == DEFAULT_SETTINGS
    assert await db.run(count_rows, user_id) == 0


async def test_upsert_then_select_round_trip(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    await db.run(upsert_settings, user_id, SAVED)
    assert await db.run(select_settings, user_id) == SAVED
    changed = SettingsRow(auto_pip=False, skip_seconds=300, site_flags={})
    await db.run(upsert_settings, user_id, changed)
    assert await db.run(select_settings, user_id) == changed
    assert await db.run(count_rows, user_id) == 1


async def test_unknown_user_is_gone(db: Database) -> None:
    stranger = uuid.uuid4()
    with pytest.raises(UserGone):
        await db.run(select_settings, stranger)
    with pytest.raises(UserGone):
        await db.run(lock_settings, stranger)
    with pytest.raises(UserGone):
        await db.run(upsert_settings, stranger, SAVED)


async def test_refused_write_leaves_no_default_row(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    with pytest.raises(ApiError) as caught:
        await db.run(write_settings, user_id, '"not-the-tag"', lambda _current: SAVED)
    assert caught.value.status == 412
    assert await db.run(count_rows, user_id) == 0


async def test_write_checks_if_match_against_the_stored_document(db: Database) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    default_tag = etag_for(canonical_body(DEFAULT_SETTINGS))
    assert await db.run(write_settings, user_id, default_tag, lambda _c: SAVED) == SAVED
    with pytest.raises(ApiError):
        await db.run(write_settings, user_id, default_tag, lambda _c: DEFAULT_SETTINGS)
    saved_tag = etag_for(canonical_body(SAVED))
    assert await db.run(write_settings, user_id, f'"x", {saved_tag}', lambda _c: SAVED) == SAVED


WAITING_ON_LOCK = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


async def test_second_writer_with_the_same_tag_waits_then_gets_412(db: Database) -> None:
    """The first write of a user (no row yet) holds the lock; the second sees its result."""
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    tag = etag_for(canonical_body(DEFAULT_SETTINGS))
    inside, release = threading.Event(), threading.Event()

    def slow_change(_current: SettingsRow) -> SettingsRow:
        inside.set()
        release.wait(5)
        return SAVED

    def count_waiters(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(WAITING_ON_LOCK).fetchone()
        assert row is not None
        return int(row[0])

    async def second_is_waiting() -> bool:
        return await db.run(count_waiters) >= 1

    outcomes: dict[str, object] = {}

    async def second() -> None:
        try:
            await db.run(write_settings, user_id, tag, lambda _c: DEFAULT_SETTINGS)
            outcomes["second"] = 200
        except ApiError as error:
            outcomes["second"] = error.status

    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, write_settings, user_id, tag, slow_change)
        await trio.to_thread.run_sync(inside.wait, 5)
        nursery.start_soon(second)
        await eventually(second_is_waiting, within=5)
        release.set()
    assert outcomes == {"second": 412}
    assert await db.run(select_settings, user_id) == SAVED
