"""Idempotency-Key: a replay answers the remembered answer without a second insert; one write
at a time per user."""

from __future__ import annotations

import httpx
import trio

from tests.app.conftest import RunningApp
from tests.fakes.youtube_playlists import FakePlaylists
from tests.playlist.write.conftest import (
    VIDEO_A,
    VIDEO_B,
    PlaylistApp,
    User,
    add,
    check_problem,
    connected,
)
from tests.playlist.write.grants_fake import FakeGrants
from tests.support.polling import eventually

KEY = "3f1c2b9e-7d4a-4e55-9a61-0c8f2d7b1e42"


async def test_a_replay_answers_the_same_without_inserting(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    first = await add(app, alice, VIDEO_A, key=KEY)
    assert first.status_code == 200, first.text
    assert "idempotency-replayed" not in first.headers
    await add(app, alice, VIDEO_B)  # not "the same video in a row" any more
    replay = await add(app, alice, VIDEO_A, key=KEY)
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["idempotency-replayed"] == "true"
    assert youtube.calls == {"playlists": 1, "playlistItems": 2}


async def test_the_same_key_for_another_body_is_422(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    await add(app, alice, VIDEO_A, key=KEY)
    problem = check_problem(await add(app, alice, VIDEO_B, key=KEY), 422, "idempotency_key_reused")
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert youtube.calls["playlistItems"] == 1


async def test_keys_belong_to_one_user(
    app: RunningApp, alice: User, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    bob = await connected(app, grants, "bob")
    a = await add(app, alice, VIDEO_A, key=KEY)
    b = await add(app, bob, VIDEO_A, key=KEY)
    assert "idempotency-replayed" not in b.headers
    assert a.json()["playlistId"] != b.json()["playlistId"]
    assert youtube.calls["playlistItems"] == 2


async def test_an_error_is_not_remembered(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    youtube.fail_next("playlists", "backendError")
    check_problem(await add(app, alice, VIDEO_A, key=KEY), 502, "upstream_error")
    retried = await add(app, alice, VIDEO_A, key=KEY)
    assert retried.status_code == 200, retried.text
    assert "idempotency-replayed" not in retried.headers


async def test_a_replay_on_another_replica(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    async with playlist_app() as one, playlist_app() as two:
        alice = await connected(one, grants, "alice")
        first = await add(one, alice, VIDEO_A, key=KEY)
        replay = await add(two, alice, VIDEO_A, key=KEY)
    assert replay.json() == first.json()
    assert replay.headers["idempotency-replayed"] == "true"
    assert youtube.calls["playlistItems"] == 1


async def test_one_write_at_a_time_per_user_across_replicas(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    async with playlist_app() as one, playlist_app() as two:
        alice = await connected(one, grants, "alice")
        bob = await connected(one, grants, "bob")
        youtube.hold = trio.Event()
        answers: dict[str, httpx.Response] = {}

        async def first() -> None:
            answers["first"] = await add(one, alice, VIDEO_A)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await eventually(lambda: youtube.calls["playlists"] == 1)
            busy = await add(two, alice, VIDEO_A)
            problem = check_problem(busy, 409, "conflict")
            assert (problem["retryable"], busy.headers["retry-after"]) == (True, "1")

            async def other_user() -> None:
                answers["bob"] = await add(two, bob, VIDEO_A)

            nursery.start_soon(other_user)  # another user is not blocked by alice's write
            await eventually(lambda: youtube.calls["playlists"] == 2)
            youtube.hold.set()
        assert answers["first"].status_code == 200
        assert answers["bob"].status_code == 200
        # Alice's write is done: the lock is free again.
        again = await add(two, alice, VIDEO_A)
        assert again.json()["alreadyAdded"] is True
    assert len(youtube.owned_by(str(alice.id))) == 1


async def test_a_write_cut_off_by_its_deadline_frees_the_lock(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    settings = {"request_timeout": "1.5", "body_timeout": "1", "suggest_wait_seconds": "1"}
    async with playlist_app(**settings) as app:
        alice = await connected(app, grants, "alice")
        youtube.hold = trio.Event()  # YouTube never answers the first write
        check_problem(await add(app, alice, VIDEO_A), 503, "deadline_exceeded")
        youtube.hold.set()
        youtube.hold = None
        again = await add(app, alice, VIDEO_A)
        assert again.status_code == 200, again.text
