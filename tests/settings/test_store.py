"""The settings query functions of ``store.settings`` (the locked write: ``test_service``)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

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
    history = SettingsRow(
        auto_pip=False,
        skip_seconds=300,
        site_flags={},
        history_retention_days=7,
        history_paused=True,
    )
    await db.run(upsert_settings, user_id, history)
    assert await db.run(select_settings, user_id) == history
    assert await db.run(lock_settings, user_id) == history
    assert await db.run(count_rows, user_id) == 1


async def test_unknown_user_is_gone(db: Database) -> None:
    stranger = uuid.uuid4()
    with pytest.raises(UserGone):
        await db.run(select_settings, stranger)
    with pytest.raises(UserGone):
        await db.run(lock_settings, stranger)
    with pytest.raises(UserGone):
        await db.run(upsert_settings, stranger, SAVED)


@pytest.mark.parametrize("days", [0, 2, 365])
async def test_the_table_refuses_a_retention_not_offered(db: Database, days: int) -> None:
    user_id, _ = await db.run(upsert_user, ISS, "sub-1")
    odd = SettingsRow(auto_pip=False, skip_seconds=10, site_flags={}, history_retention_days=days)
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(upsert_settings, user_id, odd)
