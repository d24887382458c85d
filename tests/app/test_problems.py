"""Problem documents tell a client what to do next: retry or not, and when."""

from __future__ import annotations

import json

import pytest

from smartpip.http.problems import ApiError, problem_body, retry_after_seconds


def doc(status: int, **kwargs: object) -> dict[str, object]:
    body: dict[str, object] = json.loads(problem_body(status, "why", request_id="r1", **kwargs))  # type: ignore[arg-type]
    return body


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (409, False),
        (412, False),
        (413, False),
        (422, False),
        (429, True),
        (500, False),
        (502, True),
        (503, True),
        (504, True),
    ],
)
def test_retryable_follows_the_status(status: int, retryable: bool) -> None:
    assert doc(status)["retryable"] is retryable


def test_retry_after_is_echoed_in_seconds_and_only_when_present() -> None:
    assert doc(503, retry_after=7)["retryAfter"] == 7
    assert "retryAfter" not in doc(503)


def test_an_error_can_override_retryable_and_add_members() -> None:
    body = doc(503, retryable=False, extra={"resetsAt": "2026-03-11T07:00:00Z"})
    assert body["retryable"] is False
    assert body["resetsAt"] == "2026-03-11T07:00:00Z"


def test_extension_members_never_replace_the_standard_ones() -> None:
    body = doc(404, extra={"status": 200, "code": "ok", "requestId": "forged"})
    assert (body["status"], body["code"], body["requestId"]) == (404, "not_found", "r1")


def test_a_500_shows_only_the_request_id() -> None:
    body = doc(500)
    assert body["detail"] == "internal error; quote request ID r1"
    assert body["retryable"] is False


def test_retry_after_seconds_reads_the_header_in_any_case() -> None:
    assert retry_after_seconds({"retry-after": "12"}) == 12
    assert retry_after_seconds({"Retry-After": "3"}) == 3
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds(None) is None


def test_api_error_keeps_its_overrides() -> None:
    error = ApiError(503, "down", retryable=False, extra={"a": 1})
    assert (error.retryable, error.extra, error.code) == (False, {"a": 1}, "service_unavailable")
