"""Errors, retries and bounds of :meth:`YouTubeClient.search` under the fake's faults."""

from __future__ import annotations

import logging

import attrs
import httpx
import pytest
import trio

from smartpip.youtube import (
    BadRequest,
    Forbidden,
    KeyInvalid,
    QuotaExceeded,
    RateLimited,
    UpstreamFailure,
    YouTubeClient,
    YouTubeError,
    YouTubeSettings,
)
from tests.fakes.youtube import FakeYouTube
from tests.youtube.conftest import API_KEY, Calls, RecordingSleep


def _wrong_key_client(settings: YouTubeSettings, http: httpx.AsyncClient) -> YouTubeClient:
    return YouTubeClient(attrs.evolve(settings, api_key="wrong-key"), http)


async def test_quota_exceeded_is_not_retried(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls, sleep: RecordingSleep
) -> None:
    fake.inject(quota_exceeded=True)

    with pytest.raises(QuotaExceeded) as caught:
        await client.search("lofi")

    assert caught.value.reasons == ("quotaExceeded",)
    assert caught.value.status == 403
    assert fake.calls == {"search": 1}
    assert calls == [("search", "quota")]
    assert sleep.delays == []


@pytest.mark.parametrize("legacy", [False, True])
async def test_key_invalid_in_both_envelopes(
    settings: YouTubeSettings, http: httpx.AsyncClient, fake: FakeYouTube, legacy: bool
) -> None:
    fake.legacy_key_error = legacy

    with pytest.raises(KeyInvalid) as caught:
        await _wrong_key_client(settings, http).search("lofi")

    expected = ("keyInvalid",) if legacy else ("badRequest", "API_KEY_INVALID")
    assert caught.value.reasons == expected
    assert "wrong-key" not in str(caught.value)
    assert fake.calls == {"search": 1}


@pytest.mark.parametrize("reason", ["forbidden", "accessNotConfigured", "insufficientPermissions"])
async def test_forbidden(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls, reason: str
) -> None:
    fake.inject(forbidden=reason)

    with pytest.raises(Forbidden):
        await client.search("lofi")

    assert calls == [("search", "forbidden")]


async def test_other_400_is_bad_request(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls
) -> None:
    fake.fail_next(1, status=400, method="search")

    with pytest.raises(BadRequest):
        await client.search("lofi")

    assert fake.calls == {"search": 1}
    assert calls == [("search", "bad_request")]


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
async def test_rate_limit_is_an_upstream_failure_not_retried(
    client: YouTubeClient, fake: FakeYouTube, reason: str
) -> None:
    fake.inject(forbidden=reason)

    with pytest.raises(RateLimited) as caught:
        await client.search("lofi")

    assert isinstance(caught.value, UpstreamFailure) and not caught.value.retryable
    assert fake.calls == {"search": 1}


async def test_5xx_twice_then_success(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls, sleep: RecordingSleep
) -> None:
    fake.fail_next(2, method="search")

    videos = await client.search("jazz")

    assert [v.video_id for v in videos] == ["jazz0000001"]
    assert fake.calls == {"search": 3, "videos": 1}
    assert calls == [("search", "error"), ("search", "error"), ("search", "ok"), ("videos", "ok")]
    base = client.settings.retry_base
    assert len(sleep.delays) == 2
    for attempt, delay in enumerate(sleep.delays):
        ceiling = base * 2**attempt
        assert ceiling / 2 <= delay <= ceiling


async def test_a_per_search_hook_sees_only_that_searchs_attempts(
    client: YouTubeClient, fake: FakeYouTube, calls: Calls
) -> None:
    fake.fail_next(1, method="search")
    mine = Calls()

    await client.search("jazz", on_call=mine)
    await client.search("jazz")

    assert mine == [("search", "error"), ("search", "ok"), ("videos", "ok")]
    assert len(calls) == 5  # the client's own hook saw both searches


async def test_5xx_on_videos_is_retried_too(client: YouTubeClient, fake: FakeYouTube) -> None:
    fake.fail_next(1, status=500, method="videos")

    assert len(await client.search("jazz")) == 1
    assert fake.calls == {"search": 1, "videos": 2}


async def test_5xx_always_gives_up_after_the_retries(
    client: YouTubeClient,
    fake: FakeYouTube,
    sleep: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.fail_next(100, method="search")

    with pytest.raises(UpstreamFailure) as caught:
        await client.search("jazz")

    assert caught.value.status == 503 and caught.value.reasons == ("backendError",)
    assert fake.calls == {"search": 1 + client.settings.retries}
    assert len(sleep.delays) == client.settings.retries
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_timeout_is_retried_then_fails_within_a_bound(
    client: YouTubeClient, fake: FakeYouTube, sleep: RecordingSleep
) -> None:
    """YouTube is held (never answers): only the client's timeout can end each attempt, and
    the error names it. The bound, ``attempts * timeout`` plus the backoffs, then follows by
    construction; the clock is not read (the hang guard only turns a hang into a failure)."""
    answer = trio.Event()
    fake.inject("search", hold=answer)
    attempts = 1 + client.settings.retries
    timeout = client.settings.timeout
    try:
        with trio.fail_after(10 * attempts * timeout), pytest.raises(UpstreamFailure) as caught:
            await client.search("jazz")
    finally:
        answer.set()

    # The overall deadline, or the read timeout (the same setting) when both fire at once.
    assert str(caught.value).endswith((f"no answer within {timeout:g} s", "ReadTimeout"))
    assert caught.value.retryable
    assert fake.calls == {"search": attempts}
    assert len(sleep.delays) == client.settings.retries


@pytest.mark.parametrize("fault", ["malformed", "oversized", "redirect"])
@pytest.mark.parametrize("method", ["search", "videos"])
async def test_unusable_answers_fail_without_retry(
    client: YouTubeClient,
    fake: FakeYouTube,
    sleep: RecordingSleep,
    calls: Calls,
    fault: str,
    method: str,
) -> None:
    fake.inject(method, **{fault: True})

    with pytest.raises(UpstreamFailure) as caught:
        await client.search("jazz")

    assert not caught.value.retryable
    assert fake.calls[method] == 1
    assert sleep.delays == []
    assert calls[-1] == (method, "error")


async def test_connection_refused_is_an_upstream_failure(
    http: httpx.AsyncClient, sleep: RecordingSleep
) -> None:
    # A bound socket that never listens: connecting to its port is refused.
    with trio.socket.socket() as closed:
        await closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        settings = YouTubeSettings(api_url=f"http://127.0.0.1:{port}/youtube/v3", api_key=API_KEY)
        client = YouTubeClient(settings, http, sleep=sleep)
        with pytest.raises(UpstreamFailure, match="ConnectError"):
            await client.search("jazz")

    assert len(sleep.delays) == settings.retries


async def test_key_never_in_logs_or_messages(
    client: YouTubeClient,
    settings: YouTubeSettings,
    http: httpx.AsyncClient,
    fake: FakeYouTube,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    messages = [str(v) for v in await client.search("lofi")]
    for fault in ({"fail_count": 100}, {"quota_exceeded": True}, {"malformed": True}):
        fake.inject(**fault)
        with pytest.raises(YouTubeError) as caught:
            await client.search("lofi")
        messages += [str(caught.value), repr(caught.value)]
        fake.inject(fail_count=0, quota_exceeded=False, malformed=False)
    fake.inject(latency=5.0)
    with pytest.raises(UpstreamFailure) as timed_out:
        await client.search("lofi")
    messages.append(str(timed_out.value))

    assert caplog.records  # the retry warnings, at least
    logged = [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    for text in [*logged, *messages]:
        assert API_KEY not in text
        assert "key=" not in text


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": {"not": "a list"}}',
        b'{"items": [{"id": {"kind": "youtube#channel"}, "snippet": {}}]}',
        b'{"items": [{"id": {"videoId": "x"}, "snippet": {"title": "t", "publishedAt": "?"}}]}',
        b"[1, 2]",
    ],
)
async def test_wrong_shape_is_an_upstream_failure_without_retry(
    sleep: RecordingSleep, body: bytes
) -> None:
    # The fake only serves the right shape; a mock transport plays a broken upstream.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    settings = YouTubeSettings(api_url="http://youtube.invalid/youtube/v3", api_key=API_KEY)
    async with httpx.AsyncClient(transport=transport) as http:
        client = YouTubeClient(settings, http, sleep=sleep)
        with pytest.raises(UpstreamFailure) as caught:
            await client.search("jazz")

    assert not caught.value.retryable
    assert API_KEY not in str(caught.value)
    assert sleep.delays == []
