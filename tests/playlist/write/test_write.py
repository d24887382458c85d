"""POST /v1/youtube/playlist: the first write creates a private playlist, later ones reuse it."""

from __future__ import annotations

import psycopg
import pytest

from tests.app.conftest import RunningApp
from tests.fakes.youtube_playlists import FakePlaylists
from tests.history.conftest import sign_in
from tests.playlist.write.conftest import (
    VIDEO_A,
    VIDEO_B,
    VIDEO_C,
    PlaylistApp,
    User,
    add,
    check_problem,
    connected,
    playlist_state,
)
from tests.playlist.write.grants_fake import FakeGrants


async def test_first_write_creates_one_private_playlist_and_remembers_it(
    app: RunningApp, alice: User, youtube: FakePlaylists, grants: FakeGrants, pg_url: str
) -> None:
    first = await add(app, alice, VIDEO_A)
    assert first.status_code == 200, first.text
    body = first.json()
    playlist_id = body["playlistId"]
    assert body == {
        "playlistId": playlist_id,
        "videoId": VIDEO_A,
        "itemId": body["itemId"],
        "playlistCreated": True,
        "alreadyAdded": False,
    }
    second = await add(app, alice, VIDEO_B)
    assert second.status_code == 200, second.text
    assert second.json()["playlistId"] == playlist_id
    assert second.json()["playlistCreated"] is False

    assert youtube.calls == {"playlists": 1, "playlistItems": 2}
    playlist = youtube.playlists[playlist_id]
    assert (playlist.owner, playlist.title, playlist.privacy) == (
        str(alice.id),
        "Smart PiP",
        "private",
    )
    assert playlist.videos == [VIDEO_A, VIDEO_B]
    # The wire format: part, body and the user's bearer token; no API key.
    create, insert = youtube.requests[0], youtube.requests[1]
    assert create.params == {"part": "snippet,status"}
    assert create.body["status"] == {"privacyStatus": "private"}
    assert create.body["snippet"]["title"] == "Smart PiP"
    assert insert.params == {"part": "snippet"}
    assert insert.body == {
        "snippet": {
            "playlistId": playlist_id,
            "resourceId": {"kind": "youtube#video", "videoId": VIDEO_A},
        }
    }
    assert insert.headers["authorization"] == f"Bearer {grants.current[alice.id]}"
    assert "key" not in insert.params
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT playlist_id, last_video_id FROM youtube_playlists WHERE user_id = %s",
            (alice.id,),
        ).fetchone()
    assert row == (playlist_id, VIDEO_B)


async def test_the_same_video_twice_in_a_row_is_one_insert(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    first = (await add(app, alice, VIDEO_A)).json()
    again = await add(app, alice, VIDEO_A)
    assert again.status_code == 200
    assert again.json() == {**first, "playlistCreated": False, "alreadyAdded": True}
    assert youtube.calls["playlistItems"] == 1
    # Not in a row: added again.
    await add(app, alice, VIDEO_B)
    await add(app, alice, VIDEO_A)
    assert youtube.playlists[first["playlistId"]].videos == [VIDEO_A, VIDEO_B, VIDEO_A]


async def test_a_named_playlist_is_used_and_not_remembered(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    own = (await add(app, alice, VIDEO_A)).json()["playlistId"]
    youtube.playlists["PLuserOwnPlaylist0001"] = youtube.playlists.pop(own)
    named = await add(app, alice, VIDEO_B, playlist_id="PLuserOwnPlaylist0001")
    assert named.status_code == 200, named.text
    assert named.json()["playlistId"] == "PLuserOwnPlaylist0001"
    assert named.json()["playlistCreated"] is False
    assert youtube.playlists["PLuserOwnPlaylist0001"].videos == [VIDEO_A, VIDEO_B]
    assert youtube.calls["playlists"] == 1


async def test_each_user_gets_their_own_playlist(
    app: RunningApp, alice: User, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    bob = await connected(app, grants, "bob")
    a = (await add(app, alice, VIDEO_A)).json()["playlistId"]
    b = (await add(app, bob, VIDEO_A)).json()["playlistId"]
    assert a != b
    assert youtube.playlists[b].owner == str(bob.id)
    # The same video for another user is not "already added".
    assert youtube.calls["playlistItems"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"videoId": "short"}, "videoId"),
        ({"videoId": "dQw4w9WgXcQ1"}, "videoId"),
        ({"videoId": "dQw4w9WgX/Q"}, "videoId"),
        ({"videoId": 12345678901}, "videoId"),
        ({}, "videoId"),
        ({"videoId": VIDEO_A, "playlistId": "PL"}, "playlistId"),
        ({"videoId": VIDEO_A, "playlistId": "PL../../etc?x"}, "playlistId"),
        ({"videoId": VIDEO_A, "userId": "someone"}, "userId"),
    ],
)
async def test_invalid_bodies_are_422_and_call_nothing(
    app: RunningApp, alice: User, youtube: FakePlaylists, body: object, field: str
) -> None:
    problem = check_problem(await add(app, alice, body=body), 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert youtube.calls == {}


@pytest.mark.parametrize("key", ["short", "x" * 129, "has space in it", "semi;colon;key"])
async def test_a_bad_idempotency_key_is_400(
    app: RunningApp, alice: User, youtube: FakePlaylists, key: str
) -> None:
    headers = {**alice.headers, "Idempotency-Key": key}
    response = await app.client.post(
        "/v1/youtube/playlist", json={"videoId": VIDEO_C}, headers=headers
    )
    check_problem(response, 400, "invalid_request")
    assert youtube.calls == {}


async def test_sign_in_is_required(app: RunningApp) -> None:
    response = await app.client.post("/v1/youtube/playlist", json={"videoId": VIDEO_A})
    check_problem(response, 401, "unauthorized")


async def test_without_grants_the_write_is_off(
    playlist_app: PlaylistApp, youtube: FakePlaylists
) -> None:
    async with playlist_app(with_grants=False) as app:
        user = await sign_in(app, "carol")
        problem = check_problem(await add(app, user), 503, "playlist_unavailable")
        assert problem["retryAfter"] == 3600
        assert await playlist_state(app) == "disabled"
    assert youtube.calls == {}


async def test_status_reports_playlist_up(app: RunningApp) -> None:
    assert await playlist_state(app) == "up"
