"""Fixtures for the history tests: the real app, signed-in users, raw rows for comparison."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import psycopg
import pytest

from store.users import upsert_user
from tests.app.conftest import AppFactory, RunningApp
from tests.app.conftest import app_factory as app_factory  # the fixture, shared

#: Same keys for every app of a test, so that one token works on all of them.
KEY = "k1:" + "h" * 40


@attrs.frozen
class User:
    """A signed-in user: ID and ``Authorization`` header."""

    id: uuid.UUID
    headers: dict[str, str]


async def sign_in(app: RunningApp, sub: str) -> User:
    """Create (or find) the user ``sub`` and issue an access token for it."""
    user_id, _created = await app.resources.db.run(upsert_user, "https://test.example", sub)
    token = app.resources.tokens.issue(user_id)
    return User(user_id, {"Authorization": f"Bearer {token}"})


def video(n: int, **overrides: Any) -> dict[str, Any]:
    """A valid POST body for the ``n``-th YouTube video (distinct IDs for distinct ``n``)."""
    video_id = f"vid{n:08d}"
    body: dict[str, Any] = {
        "provider": "youtube",
        "videoId": video_id,
        "title": f"Video {n}",
        "url": f"https://www.youtube.com/watch?v={video_id}",
        "watchedAt": f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
    }
    body.update(overrides)
    return body


def history_rows(pg_url: str, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """Every column of the user's ``video_history`` rows, in ID order."""
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT * FROM video_history WHERE user_id = %s ORDER BY id", (user_id,)
        ).fetchall()


def ids(response: httpx.Response) -> list[str]:
    """The video IDs of an ``{items}`` answer, in order."""
    assert response.status_code == 200, response.text
    return [item["videoId"] for item in response.json()["items"]]


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[RunningApp]:
    """The app with the test keys."""
    async with app_factory(jwt_keys=KEY) as running:
        yield running


@pytest.fixture
async def alice(app: RunningApp) -> User:
    """A signed-in user."""
    return await sign_in(app, "alice")


@pytest.fixture
async def bob(app: RunningApp) -> User:
    """Another signed-in user."""
    return await sign_in(app, "bob")
