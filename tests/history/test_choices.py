"""The user's history choices at write time: paused records nothing, a retention prunes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.app.conftest import RunningApp
from tests.history.conftest import User, history_rows, ids, video


async def choose(app: RunningApp, user: User, **choices: object) -> None:
    response = await app.client.patch("/v1/settings", json=choices, headers=user.headers)
    assert response.status_code == 200, response.text


async def test_a_write_says_it_was_recorded(app: RunningApp, alice: User) -> None:
    response = await app.client.post("/v1/history", json=video(1), headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["recorded"] is True
    assert ids(response) == ["vid00000001"]


async def test_while_paused_nothing_is_recorded_and_the_answer_says_so(
    app: RunningApp, alice: User, bob: User, pg_url: str
) -> None:
    for n in (1, 2):
        await app.client.post("/v1/history", json=video(n), headers=alice.headers)
    before = history_rows(pg_url, alice.id)
    await choose(app, alice, historyPaused=True)

    response = await app.client.post("/v1/history", json=video(3), headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["recorded"] is False
    assert ids(response) == ["vid00000002", "vid00000001"]  # the history as it is
    # A re-watch of a kept video does not move or change it either.
    rewatch = video(1, title="changed", watchedAt="2024-01-01T01:00:00Z")
    response = await app.client.post("/v1/history", json=rewatch, headers=alice.headers)
    assert response.json()["recorded"] is False
    assert history_rows(pg_url, alice.id) == before

    # Another user's history is recorded as usual.
    other = await app.client.post("/v1/history", json=video(4), headers=bob.headers)
    assert other.json()["recorded"] is True and ids(other) == ["vid00000004"]

    await choose(app, alice, historyPaused=False)
    response = await app.client.post("/v1/history", json=video(3), headers=alice.headers)
    assert response.json()["recorded"] is True
    assert ids(response) == ["vid00000003", "vid00000002", "vid00000001"]


async def test_paused_still_validates_the_body(app: RunningApp, alice: User) -> None:
    await choose(app, alice, historyPaused=True)
    response = await app.client.post(
        "/v1/history", json=video(1, videoId="nope"), headers=alice.headers
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["videoId"]


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def test_a_retention_prunes_older_videos_at_write_time(
    app: RunningApp, alice: User, pg_url: str
) -> None:
    now = datetime.now(UTC)
    await choose(app, alice, historyRetentionDays=7)
    old = video(1, watchedAt=iso(now - timedelta(days=7, minutes=5)))
    response = await app.client.post("/v1/history", json=old, headers=alice.headers)
    assert response.status_code == 200, response.text
    # Recorded (the history is on) but not kept: it is past the user's retention.
    assert response.json() == {"items": [], "recorded": True}
    recent = video(2, watchedAt=iso(now - timedelta(days=6, hours=23)))
    response = await app.client.post("/v1/history", json=recent, headers=alice.headers)
    assert ids(response) == ["vid00000002"]
    assert len(history_rows(pg_url, alice.id)) == 1


async def test_without_a_retention_old_videos_are_kept(app: RunningApp, alice: User) -> None:
    old = video(1, watchedAt="2010-01-01T00:00:00Z")
    response = await app.client.post("/v1/history", json=old, headers=alice.headers)
    assert ids(response) == ["vid00000001"]


async def test_the_last_five_cap_still_holds_with_a_retention(app: RunningApp, alice: User) -> None:
    await choose(app, alice, historyRetentionDays=90)
    now = datetime.now(UTC)
    for n in range(7):
        body = video(n, watchedAt=iso(now - timedelta(minutes=10 - n)))
        response = await app.client.post("/v1/history", json=body, headers=alice.headers)
    assert ids(response) == [f"vid{n:08d}" for n in range(6, 1, -1)]
