"""HTTP hygiene every route gets: problem documents, request IDs, limits, strict JSON, CORS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

from smartpip.http.problems import PROBLEM_JSON, RETRYABLE_STATUSES
from tests.app.conftest import AppFactory, RunningApp

ORIGIN = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


async def assert_healthy(app: RunningApp) -> None:
    assert (await app.client.get("/healthz")).status_code == 200


def assert_problem(response: object, status: int, code: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["requestId"] == response.headers["x-request-id"]
    assert body["retryable"] is (status in RETRYABLE_STATUSES)
    if "retry-after" in response.headers:
        assert body["retryAfter"] == int(response.headers["retry-after"])
    else:
        assert "retryAfter" not in body
    return body


async def test_unknown_route_is_a_404_problem(app: RunningApp) -> None:
    assert_problem(await app.client.get("/nope"), 404, "not_found")
    assert_problem(await app.client.get("/n%C3%B6pe"), 404, "not_found")


async def test_wrong_method_is_a_405_problem_with_allow(app: RunningApp) -> None:
    response = await app.client.delete("/healthz")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_500_reveals_only_the_request_id(
    app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    response = await app.client.get("/test/boom", headers={"X-Request-ID": "trace-123"})
    body = assert_problem(response, 500, "internal_error")
    assert body["requestId"] == "trace-123"
    assert "secret internal detail" not in response.text
    assert "RuntimeError" not in response.text
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors, "a 500 must be logged as an error"
    caplog.clear()  # this ERROR is the expected one
    await assert_healthy(app)


async def test_request_id_echoed_generated_or_replaced(app: RunningApp) -> None:
    echoed = await app.client.get("/healthz", headers={"X-Request-ID": "abc-DEF_1.2:3"})
    assert echoed.headers["x-request-id"] == "abc-DEF_1.2:3"
    generated = await app.client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    insane = await app.client.get("/healthz", headers={"X-Request-ID": "a b<script>" + "x" * 200})
    assert insane.headers["x-request-id"] != "a b<script>" + "x" * 200
    assert len(insane.headers["x-request-id"]) == 32


async def test_access_log_line(app_factory: AppFactory, capfd: pytest.CaptureFixture[str]) -> None:
    async with app_factory() as app:  # built inside the test, so its log goes to capfd
        await app.client.get(
            "/v1/status?token=should-not-be-logged", headers={"X-Request-ID": "rid-1"}
        )
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.strip()]
    access = [line for line in lines if line.get("logger") == "smartpip.access"]
    assert len(access) == 1
    event = access[0]
    assert event["event"] == "request"
    assert event["route"] == "/v1/status"
    assert event["status"] == 200
    assert event["method"] == "GET"
    assert event["request_id"] == "rid-1"
    assert event["level"] == "info"
    assert isinstance(event["duration_ms"], float)
    assert not any(
        "should-not-be-logged" in json.dumps(line)
        for line in lines
        if "logger" in line and line["logger"].startswith("smartpip")
    )


async def test_echo_accepts_plain_json(app: RunningApp) -> None:
    response = await app.client.post("/test/echo", json={"a": [1, 2.5, "é"]})
    assert response.status_code == 200
    assert response.json() == {"echo": {"a": [1, 2.5, "é"]}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": "\\ud800"}',
        b'{"a": "\\u0000"}',
        b'{"a": 1, "a": 2}',
        b'{"a": "\xff\xfe"}',
        b"{" * 5000,
        b"[" * 8000 + b"]" * 8000,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        b"",
        b"not json",
    ],
    ids=[
        "nan",
        "inf",
        "neginf",
        "1e999",
        "lone-surrogate",
        "nul",
        "duplicate-key",
        "invalid-utf8",
        "unclosed-deep",
        "deep-8000",
        "depth-40",
        "empty",
        "garbage",
    ],
)
async def test_strict_json_is_400(app: RunningApp, body: bytes) -> None:
    response = await app.client.post(
        "/test/echo", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "invalid_request")
    await assert_healthy(app)


async def test_non_json_content_type_is_415(app: RunningApp) -> None:
    response = await app.client.post(
        "/test/echo", content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_problem(response, 415, "unsupported_media_type")


async def test_body_over_16_kib_is_413(app: RunningApp) -> None:
    big = b'"' + b"x" * (16 * 1024) + b'"'
    response = await app.client.post(
        "/test/echo", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    await assert_healthy(app)


async def test_chunked_body_over_16_kib_is_413(app: RunningApp) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 1024

    response = await app.client.post(
        "/test/echo", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    await assert_healthy(app)


async def test_17_mb_body_is_413_and_process_stays_healthy(app: RunningApp) -> None:
    """A client that starts streaming 17 MB gets 413 without the server reading it all."""
    host, port = app.url.removeprefix("http://").split(":")
    head = (
        "POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {17 * 1024 * 1024}\r\n\r\n"
    ).encode()
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(head + b"x" * 65536)
        reply = b""
        with trio.fail_after(5):
            # Read to the end of the response: closing earlier races hypercorn's own close.
            while not reply.endswith(b"}"):
                chunk = await stream.receive_some()
                if not chunk:
                    break
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in reply
    await assert_healthy(app)


async def test_long_query_string_is_414(app: RunningApp) -> None:
    response = await app.client.get("/v1/status", params={"q": "x" * 20_000})
    assert_problem(response, 414, "uri_too_long")
    await assert_healthy(app)


async def test_large_header_block_is_431(app: RunningApp) -> None:
    response = await app.client.get(
        "/healthz", headers={f"X-Pad-{i}": "y" * 1000 for i in range(20)}
    )
    assert_problem(response, 431, "request_header_fields_too_large")
    await assert_healthy(app)


async def test_70_kb_header_is_4xx(app: RunningApp) -> None:
    response = await app.client.get("/healthz", headers={"X-Huge": "z" * 70_000})
    assert 400 <= response.status_code < 500
    await assert_healthy(app)


async def test_cors_only_for_configured_origins(app_factory: AppFactory) -> None:
    async with app_factory(cors_origins=ORIGIN) as app:
        preflight = await app.client.options(
            "/v1/status",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        simple = await app.client.get("/v1/status", headers={"Origin": ORIGIN})
        foreign_preflight = await app.client.options(
            "/v1/status",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        foreign = await app.client.get("/v1/status", headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "authorization"
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    assert_problem(foreign_preflight, 403, "forbidden")
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-origin" not in foreign_preflight.headers


async def test_many_hostile_requests_leave_the_process_healthy(app: RunningApp) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(partial(app.client.post, "/test/echo", content=b"[" * 9000))
            nursery.start_soon(app.client.get, "/x" * 3000)
    await assert_healthy(app)
    assert (await app.client.get("/readyz")).status_code == 200
