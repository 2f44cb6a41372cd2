"""Logs are one JSON object per line, carry the request id and never carry a secret."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conversations_service.settings import load_settings
from servicekit.app import create_service_app
from servicekit.logging import (
    REDACTED,
    JsonFormatter,
    accept_request_id,
    bind_request_id,
    current_request_id,
    redact,
    reset_request_id,
)

# A JWT-shaped access token: header {"alg":"RS256"}, a payload, a signature.
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
QUERY_TOKEN = "query-token-7f3a9c"
route_logger = logging.getLogger("tests.servicekit.route")


class JsonLines(logging.Handler):
    """Formats each record as it is emitted, inside the request, as production does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("test_service"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def json_log() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def format_record(message: str, *args: object, **extra: Any) -> dict[str, Any]:
    record = logging.getLogger("tests.servicekit.formatter").makeRecord(
        "tests.servicekit.formatter", logging.INFO, __file__, 1, message, args, None, extra=extra
    )
    line = JsonFormatter("conversations_service").format(record)
    assert "\n" not in line
    entry: dict[str, Any] = json.loads(line)
    return entry


async def echo_request_id(request: Request) -> Response:
    return JSONResponse({"request_id": current_request_id()})


async def log_the_request(request: Request) -> Response:
    route_logger.info("handling %s", request.url, extra={"headers": dict(request.headers)})
    route_logger.info("query was %s", request.url.query)
    return Response("done")


async def crash_with_token(request: Request) -> Response:
    raise RuntimeError(f"upstream refused Bearer {ACCESS_TOKEN}")


async def read_item(request: Request) -> Response:
    return Response("item")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_service_app(
        load_settings({}),
        routes=[
            Route("/request-id", echo_request_id),
            Route("/logged", log_the_request),
            Route("/crash", crash_with_token),
            Route("/items/{item_id}", read_item),
        ],
        dependencies={},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        yield client


def test_a_log_line_is_one_json_object_with_the_standard_fields() -> None:
    token = bind_request_id("req-123")
    try:
        entry = format_record("member %s joined\nsecond line", "alice")
    finally:
        reset_request_id(token)

    assert entry["time"].endswith("Z")
    assert entry["level"] == "info"
    assert entry["logger"] == "tests.servicekit.formatter"
    assert entry["service"] == "conversations_service"
    assert entry["message"] == "member alice joined\nsecond line"
    assert entry["request_id"] == "req-123"


def test_a_log_line_outside_a_request_has_no_request_id() -> None:
    assert "request_id" not in format_record("started")


def test_extra_fields_become_json_fields() -> None:
    entry = format_record("sent", conversation_id="c-1", seq=42)

    assert entry["conversation_id"] == "c-1"
    assert entry["seq"] == 42


def test_an_exception_is_logged_on_the_same_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter("bff").format(record)

    assert "\n" not in line
    assert "ValueError: broken" in json.loads(line)["exception"]


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (f"verifying {ACCESS_TOKEN} now", ACCESS_TOKEN, "verifying"),
        ("Authorization: Bearer opaque-token.123", "opaque-token.123", "Authorization"),
        ("Cookie: theme=dark; parley_session=s3ss10n; lang=en", "s3ss10n", "Cookie"),
        ("Set-Cookie: parley_session=s3ss10n; Path=/; HttpOnly", "s3ss10n", "Set-Cookie"),
        ("login with password=hunter2 failed", "hunter2", "failed"),
        ("grant_type=client_credentials&client_secret=xyz789", "xyz789", "client_credentials"),
        ('{"refresh_token": "rt-5512"}', "rt-5512", "refresh_token"),
    ],
)
def test_redact_removes_secrets_and_keeps_the_rest(text: str, secret: str, kept: str) -> None:
    redacted = redact(text)

    assert secret not in redacted
    assert REDACTED in redacted
    assert kept in redacted


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("alice joined conversation c-1") == "alice joined conversation c-1"


@pytest.mark.parametrize("key", ["token", "password", "cookie", "authorization", "client_secret"])
def test_an_extra_field_named_like_a_secret_is_redacted(key: str) -> None:
    assert format_record("calling upstream", **{key: "plain-value-9"})[key] == REDACTED


def test_secrets_in_nested_extra_fields_are_redacted() -> None:
    entry = format_record(
        "upstream call",
        request={
            "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
            "attempts": [{"password": "hunter2"}, {"url": f"/callback?token={QUERY_TOKEN}"}],
        },
    )

    headers = entry["request"]["headers"]
    assert headers == {"Authorization": REDACTED, "Accept": "application/json"}
    assert entry["request"]["attempts"][0] == {"password": REDACTED}
    assert QUERY_TOKEN not in json.dumps(entry)


async def test_a_sane_incoming_request_id_is_echoed_and_bound(client: httpx.AsyncClient) -> None:
    response = await client.get("/request-id", headers={"X-Request-ID": "edge-4f2a:7"})

    assert response.headers["x-request-id"] == "edge-4f2a:7"
    assert response.json() == {"request_id": "edge-4f2a:7"}


async def test_a_request_without_an_id_gets_a_generated_one(client: httpx.AsyncClient) -> None:
    first = await client.get("/request-id")
    second = await client.get("/request-id")

    assert first.json()["request_id"] == first.headers["x-request-id"]
    assert len(first.headers["x-request-id"]) >= 16
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "malformed",
    ["a" * 129, "two words", 'forged\n{"level": "error"}', "trailing-newline\n", ""],
)
async def test_a_malformed_request_id_is_replaced(
    client: httpx.AsyncClient, malformed: str
) -> None:
    response = await client.get("/request-id", headers={"X-Request-ID": malformed})

    replaced = response.headers["x-request-id"]
    assert replaced != malformed
    assert replaced.isalnum()
    assert response.json() == {"request_id": replaced}


def test_a_request_id_of_128_plain_characters_is_accepted() -> None:
    assert accept_request_id("a" * 128) == "a" * 128


async def test_each_request_writes_one_access_line(
    client: httpx.AsyncClient, json_log: JsonLines
) -> None:
    response = await client.get("/items/42", headers={"X-Request-ID": "access-1"})

    [access] = [entry for entry in json_log.entries() if entry["logger"] == "servicekit.access"]
    assert response.status_code == 200
    assert access["message"] == "GET /items/42 200"
    assert access["request_id"] == "access-1"
    assert isinstance(access["duration_ms"], float)
    assert access["duration_ms"] >= 0


async def test_an_access_line_records_the_status_of_a_failed_request(
    client: httpx.AsyncClient, json_log: JsonLines
) -> None:
    await client.get("/no/such/route")

    [access] = [entry for entry in json_log.entries() if entry["logger"] == "servicekit.access"]
    assert access["message"] == "GET /no/such/route 404"


async def test_logs_written_while_handling_a_request_never_contain_its_tokens(
    client: httpx.AsyncClient, json_log: JsonLines
) -> None:
    response = await client.get(
        f"/logged?access_token={QUERY_TOKEN}",
        headers={
            "Authorization": f"Bearer {ACCESS_TOKEN}",
            "Cookie": f"theme=dark; parley_session={ACCESS_TOKEN}",
            "X-Request-ID": "tokens-1",
        },
    )

    assert response.status_code == 200
    route_entries = [entry for entry in json_log.entries() if entry["logger"] == route_logger.name]
    assert len(route_entries) == 2
    assert all(entry["request_id"] == "tokens-1" for entry in route_entries)
    everything_logged = "\n".join(json_log.lines)
    assert ACCESS_TOKEN not in everything_logged
    assert QUERY_TOKEN not in everything_logged


async def test_an_unexpected_error_is_logged_with_the_request_id_and_without_tokens(
    client: httpx.AsyncClient, json_log: JsonLines
) -> None:
    response = await client.get("/crash", headers={"X-Request-ID": "crash-2"})

    [error] = [entry for entry in json_log.entries() if entry["logger"] == "servicekit.errors"]
    assert response.status_code == 500
    assert error["request_id"] == "crash-2"
    assert "RuntimeError: upstream refused" in error["exception"]
    assert ACCESS_TOKEN not in "\n".join(json_log.lines)
