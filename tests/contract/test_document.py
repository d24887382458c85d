"""The OpenAPI document's own consistency: shared answers everywhere, problems, links, examples.

``tests/app/test_ops.py`` keeps the document's operations equal to the routes; the fuzz run
(``test_fuzz.py``) checks answers against it; this module checks what neither would notice:
an operation that forgot a status every operation can get, a link to nothing, an example that
breaks its own schema, a problem code the server uses and the document does not list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from smartpip.http.problems import CODES, problem_body, retry_after_seconds
from smartpip.http.public import load_openapi

DOCUMENT: dict[str, Any] = json.loads(load_openapi())
METHODS = ("get", "put", "post", "delete", "patch")
SHARED = "#/components/responses/"
#: Statuses the HTTP layer gives on every operation, before any route code runs.
EVERYWHERE = {"400": "BadRequest", "413": "PayloadTooLarge", "414": "UriTooLong"}
EVERYWHERE |= {"431": "HeadersTooLarge", "503": "Unavailable"}
#: Operations whose 503 has more to say than the deadline's problem: readiness (its own
#: document) and the sign-in callback (``sign_in_misconfigured`` comes without Retry-After).
OWN_503 = {"readyz", "oidcCallback"}


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(node: Any) -> Any:
    """Follow local ``$ref`` chains (sibling keys of a reference are descriptions only)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_validator(schema: Any) -> jsonschema_rs.Validator:
    """A validator of ``schema`` that resolves the document's ``#/components/...``."""
    return jsonschema_rs.validator_for({**schema, "components": DOCUMENT["components"]})


IDS = [f"{method.upper()} {path}" for path, method, _ in operations()]


@pytest.mark.parametrize(("path", "method", "operation"), list(operations()), ids=IDS)
def test_every_operation_has_the_answers_of_the_http_layer(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    for status, name in EVERYWHERE.items():
        if status == "503" and operation["operationId"] in OWN_503:
            own = resolve(responses["503"])
            assert "application/problem+json" in own["content"], "the deadline's problem"
            assert "Retry-After" in own["headers"]
            continue
        assert responses.get(status, {}).get("$ref") == SHARED + name, status
    if "requestBody" in operation:
        assert responses["408"]["$ref"] == SHARED + "RequestTimeout"
        assert responses["415"]["$ref"] == SHARED + "UnsupportedMediaType"
    else:
        assert "408" not in responses and "415" not in responses
    if operation.get("security") == [{"bearer": []}]:
        assert responses["401"]["$ref"] == SHARED + "Unauthorized"


@pytest.mark.parametrize(("path", "method", "operation"), list(operations()), ids=IDS)
def test_rate_limited_operations_say_so_in_every_answer(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    """An operation behind a limiter documents 429 and the RateLimit headers of its successes;
    one without a limiter documents neither."""
    responses = operation["responses"]
    successes = [resolve(r) for status, r in responses.items() if status < "400"]
    limited = "429" in responses
    if limited:
        assert responses["429"]["$ref"] == SHARED + "RateLimited"
    for response in successes:
        assert ("RateLimit" in response["headers"]) == limited, response["description"]
        assert ("RateLimit-Policy" in response["headers"]) == limited


def test_every_response_names_its_request_id_and_problems_use_the_problem_schema() -> None:
    problem_schemas = {"Problem", "FinalProblem", "RetryLaterProblem", "RetryableProblem"}
    problem_schemas.add("ValidationProblem")
    for _, _, operation in operations():
        for status, response in operation["responses"].items():
            response = resolve(response)
            assert resolve(response["headers"]["X-Request-ID"])["required"] is True
            content = response.get("content", {})
            if status >= "400":
                schema = content["application/problem+json"]["schema"]
                # One problem schema, or a choice between them (oneOf, each maybe narrowed).
                choices = schema.get("oneOf", [schema])
                refs = [c["$ref"] if "$ref" in c else c["allOf"][0]["$ref"] for c in choices]
                assert all(ref.rsplit("/", 1)[1] in problem_schemas for ref in refs), refs
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"]


def test_problem_codes_cover_every_code_the_server_uses() -> None:
    documented = set(DOCUMENT["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
    assert set(CODES.values()) <= documented
    assert {"suggest_unavailable", "deadline_exceeded", "sign_in_misconfigured"} <= documented


@pytest.mark.parametrize(
    ("status", "headers", "extra", "schema"),
    [
        (400, {}, None, "FinalProblem"),
        (401, {"WWW-Authenticate": "Bearer"}, None, "FinalProblem"),
        (408, {}, None, "RetryableProblem"),
        (429, {"Retry-After": "7"}, None, "RetryLaterProblem"),
        (502, {}, None, "RetryableProblem"),
        (503, {"Retry-After": "2"}, None, "RetryLaterProblem"),
        (503, {"Retry-After": "60"}, {"resetsAt": "2024-06-02T07:00:00Z"}, "RetryLaterProblem"),
    ],
)
def test_the_servers_problem_documents_fit_their_schemas(
    status: int, headers: dict[str, str], extra: dict[str, str] | None, schema: str
) -> None:
    body = problem_body(
        status,
        "detail",
        request_id="0123abcd",
        retry_after=retry_after_seconds(headers),
        extra=extra,
    )
    schema_validator({"$ref": f"#/components/schemas/{schema}"}).validate(json.loads(body))


def test_retry_after_comes_exactly_with_the_problems_to_retry() -> None:
    base = {"type": "about:blank", "title": "t", "status": 503, "code": "service_unavailable"}
    base["requestId"] = "r1"
    final = schema_validator({"$ref": "#/components/schemas/FinalProblem"})
    later = schema_validator({"$ref": "#/components/schemas/RetryLaterProblem"})
    assert final.is_valid({**base, "retryable": False})
    assert not final.is_valid({**base, "retryable": False, "retryAfter": 2})
    assert not final.is_valid({**base, "retryable": True})
    assert later.is_valid({**base, "retryable": True, "retryAfter": 2})
    assert not later.is_valid({**base, "retryable": True})
    assert not later.is_valid({**base, "retryable": False, "retryAfter": 2})
    assert not later.is_valid({**base, "retryable": True, "retryAfter": 2, "userId": "x"})


def test_links_name_real_operations_and_parameters() -> None:
    by_id = {op["operationId"]: op for _, _, op in operations()}
    links = 0
    for _, _, operation in operations():
        for response in operation["responses"].values():
            for name, link in resolve(response).get("links", {}).items():
                links += 1
                target = by_id[link["operationId"]]
                known = {p["name"] for p in target.get("parameters", [])}
                for parameter in link.get("parameters", {}):
                    assert parameter.removeprefix("header.") in known, (name, parameter)
                if "requestBody" in link:
                    assert "requestBody" in target, name
    assert links >= 15


def test_examples_are_valid_against_their_own_schemas() -> None:
    checked = 0
    for _, _, operation in operations():
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                schema_validator(parameter["schema"]).validate(parameter["example"])
                checked += 1
        media = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if media is None:
            continue
        validator = schema_validator(media["schema"])
        examples = [media["example"]] if "example" in media else []
        examples += [e["value"] for e in media.get("examples", {}).values()]
        for example in examples:
            validator.validate(example)
            checked += 1
    assert checked >= 10
