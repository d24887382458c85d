"""Every YouTube and Google error of the write, mapped to a clear problem; no token leaks."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from smartpip.youtube import seconds_until_pacific_midnight
from store.redis import RedisStore
from tests.app.conftest import RunningApp
from tests.fakes.youtube_playlists import FakePlaylists, Playlist
from tests.history.conftest import sign_in
from tests.playlist.write.conftest import (
    VIDEO_A,
    VIDEO_B,
    User,
    add,
    check_problem,
    connected,
    playlist_state,
)
from tests.playlist.write.grants_fake import TOKEN_PREFIX, FakeGrants


async def test_a_full_playlist_is_409(app: RunningApp, alice: User, youtube: FakePlaylists) -> None:
    youtube.max_items = 1
    assert (await add(app, alice, VIDEO_A)).status_code == 200
    problem = check_problem(await add(app, alice, VIDEO_B), 409, "playlist_full")
    assert problem["retryable"] is False


async def test_a_deleted_smart_pip_playlist_is_recreated_once(
    app: RunningApp, alice: User, youtube: FakePlaylists, pg_url: str
) -> None:
    old = (await add(app, alice, VIDEO_A)).json()["playlistId"]
    del youtube.playlists[old]  # the user deleted it on YouTube
    answer = await add(app, alice, VIDEO_B)
    assert answer.status_code == 200, answer.text
    new = answer.json()["playlistId"]
    assert new != old
    assert answer.json()["playlistCreated"] is True
    assert youtube.playlists[new].videos == [VIDEO_B]
    assert youtube.playlists[new].privacy == "private"
    assert youtube.calls == {"playlists": 2, "playlistItems": 3}
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT playlist_id FROM youtube_playlists WHERE user_id = %s", (alice.id,)
        ).fetchone()
    assert row == (new,)


async def test_recreation_happens_only_once(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    await add(app, alice, VIDEO_A)
    youtube.fail_next("playlistItems", "playlistNotFound", "playlistNotFound")
    check_problem(await add(app, alice, VIDEO_B), 502, "upstream_error")
    assert youtube.calls == {"playlists": 2, "playlistItems": 3}


async def test_a_named_playlist_that_does_not_exist_is_422(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    response = await add(app, alice, VIDEO_A, playlist_id="PLdoesNotExist0000001")
    problem = check_problem(response, 422, "playlist_not_found")
    assert problem["errors"] == [{"field": "playlistId", "message": "YouTube has no such playlist"}]
    assert youtube.calls == {"playlistItems": 1}  # nothing created


async def test_another_users_public_playlist_is_403(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    youtube.playlists["PLsomeoneElses0000001"] = Playlist("someone", "Mine", "", "public")
    response = await add(app, alice, VIDEO_A, playlist_id="PLsomeoneElses0000001")
    check_problem(response, 403, "playlist_forbidden")


async def test_an_unknown_video_is_422_and_the_created_playlist_is_kept(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    youtube.missing_videos.add(VIDEO_A)
    problem = check_problem(await add(app, alice, VIDEO_A), 422, "video_not_found")
    assert problem["errors"][0]["field"] == "videoId"
    assert (await add(app, alice, VIDEO_B)).json()["playlistCreated"] is False
    assert youtube.calls["playlists"] == 1


async def test_401_refreshes_the_token_once_and_retries(
    app: RunningApp, alice: User, youtube: FakePlaylists, grants: FakeGrants
) -> None:
    await add(app, alice, VIDEO_A)
    grants.expire(alice.id)
    answer = await add(app, alice, VIDEO_B)
    assert answer.status_code == 200, answer.text
    assert grants.calls[-2:] == [(alice.id, False), (alice.id, True)]
    assert youtube.calls["playlistItems"] == 3


async def test_401_with_a_fresh_token_asks_for_consent_again(
    app: RunningApp, alice: User, youtube: FakePlaylists, grants: FakeGrants
) -> None:
    youtube.fail_next("playlists", "authError", "authError")
    problem = check_problem(await add(app, alice, VIDEO_A), 409, "playlist_not_connected")
    assert problem["reason"] == "consent_required"
    assert problem["retryable"] is False
    assert [refresh for _, refresh in grants.calls] == [False, True]
    # The grant YouTube refuses even freshly refreshed is deleted: the user must consent again.
    assert grants.disconnected == [(alice.id, "youtube_refused")]
    again = check_problem(await add(app, alice, VIDEO_A), 409, "playlist_not_connected")
    assert again["reason"] == "not_connected"


async def test_a_revoked_grant_disconnects_the_user(
    app: RunningApp, alice: User, grants: FakeGrants
) -> None:
    grants.expire(alice.id)
    grants.revoked.add(alice.id)
    problem = check_problem(await add(app, alice, VIDEO_A), 409, "playlist_not_connected")
    assert problem["reason"] == "consent_revoked"
    again = check_problem(await add(app, alice, VIDEO_A), 409, "playlist_not_connected")
    assert again["reason"] == "not_connected"


async def test_not_connected_is_409_without_calling_youtube(
    app: RunningApp, youtube: FakePlaylists
) -> None:
    user = await sign_in(app, "never-connected")
    problem = check_problem(await add(app, user, VIDEO_A), 409, "playlist_not_connected")
    assert problem["reason"] == "not_connected"
    assert "consent" in problem["detail"]
    assert youtube.calls == {}


async def test_a_disconnected_user_is_told_so_even_for_the_last_video(
    app: RunningApp, alice: User, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    assert (await add(app, alice, VIDEO_A)).status_code == 200
    del grants.current[alice.id]  # disconnected (the consent half deleted the grant)
    problem = check_problem(await add(app, alice, VIDEO_A), 409, "playlist_not_connected")
    assert problem["reason"] == "not_connected"
    assert youtube.calls["playlistItems"] == 1


async def test_google_unavailable_is_503(app: RunningApp, alice: User, grants: FakeGrants) -> None:
    grants.unavailable = True
    problem = check_problem(await add(app, alice, VIDEO_A), 503, "playlist_unavailable")
    assert problem["retryAfter"] == 30


async def test_insufficient_scope_asks_for_consent_again(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    youtube.fail_next("playlists", "insufficientPermissions")
    problem = check_problem(await add(app, alice, VIDEO_A), 409, "playlist_not_connected")
    assert problem["reason"] == "consent_required"


async def test_youtube_failing_is_502_and_not_retried(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    await add(app, alice, VIDEO_A)
    youtube.fail_next("playlistItems", "backendError")
    check_problem(await add(app, alice, VIDEO_B), 502, "upstream_error")
    assert youtube.calls["playlistItems"] == 2  # an insert is never retried


async def test_youtube_rate_limit_is_503(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    youtube.fail_next("playlists", "rateLimitExceeded")
    problem = check_problem(await add(app, alice, VIDEO_A), 503, "playlist_unavailable")
    assert problem["retryAfter"] == 60


async def test_quota_exceeded_stops_writes_until_midnight_pacific(
    app: RunningApp, alice: User, youtube: FakePlaylists
) -> None:
    youtube.fail_next("playlists", "quotaExceeded")
    response = await add(app, alice, VIDEO_A)
    problem = check_problem(response, 503, "playlist_unavailable")
    expected = seconds_until_pacific_midnight(datetime.now(UTC))
    assert abs(int(response.headers["retry-after"]) - expected) <= 5
    assert problem["reason"] == "quota"
    assert problem["resetsAt"].endswith("Z")
    assert await playlist_state(app) == "degraded"
    check_problem(await add(app, alice, VIDEO_A), 503, "playlist_unavailable")
    assert youtube.calls == {"playlists": 1}


async def test_no_token_in_logs_answers_redis_or_postgres(
    app: RunningApp,
    alice: User,
    youtube: FakePlaylists,
    grants: FakeGrants,
    redis_store: RedisStore,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bob = await connected(app, grants, "bob")
    answers = [await add(app, alice, VIDEO_A, key="key-00000001")]
    grants.expire(alice.id)
    youtube.fail_next("playlistItems", "backendError", "authError", "authError")
    answers += [await add(app, alice, VIDEO_B) for _ in range(2)]
    youtube.fail_next("playlists", "quotaExceeded")
    answers.append(await add(app, bob, VIDEO_A))
    assert [a.status_code for a in answers] == [200, 502, 409, 503]
    assert len(grants.issued) >= 3
    texts = [a.text + str(a.headers) for a in answers] + [caplog.text]
    async for key in redis_store.client.scan_iter(match=redis_store.prefix + "*"):
        texts.append(key.decode() + str(await redis_store.client.dump(key)))
    with psycopg.connect(pg_url) as conn:
        texts += [str(row) for row in conn.execute("SELECT * FROM youtube_playlists")]
    for token in grants.issued:
        assert not any(token in text for text in texts)
    assert not any(TOKEN_PREFIX in text for text in texts)
