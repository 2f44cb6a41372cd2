"""Reading client input: JSON bodies, fields, query parameters, path ids and cursors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servicekit.cursors import decode_cursor, encode_cursor
from servicekit.errors import EXCEPTION_HANDLERS, ParleyError, ValidationFailed
from servicekit.requests import (
    MAX_IDENTIFIER_LENGTH,
    Fields,
    path_uuid,
    query_integer,
    query_text,
    read_json_object,
)


async def echo_body(request: Request) -> Response:
    return JSONResponse(await read_json_object(request, max_bytes=1024))


async def echo_query(request: Request) -> Response:
    limit = query_integer(request, "limit", default=20, minimum=1, maximum=200)
    query = query_text(request, "q", max_length=10)
    return JSONResponse({"limit": limit, "q": query})


async def echo_path(request: Request) -> Response:
    return JSONResponse({"id": str(path_uuid(request, "id", what="conversation"))})


app = Starlette(
    routes=[
        Route("/body", echo_body, methods=["POST"]),
        Route("/query", echo_query),
        Route("/things/{id}", echo_path),
    ],
    exception_handlers=EXCEPTION_HANDLERS,
)


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


async def test_a_json_object_body_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/body", json={"title": "Design review", "n": 3})
    assert response.json() == {"title": "Design review", "n": 3}


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"a": 1}', "text/plain", 415, "unsupported_media_type"),
        (b'{"a": 1}', None, 415, "unsupported_media_type"),
        (b'{"a": ', "application/json", 400, "malformed_json"),
        (b"[1, 2]", "application/json", 400, "malformed_json"),
        (b'{"a": NaN}', "application/json", 400, "malformed_json"),
        (b'{"a": "\xff"}', "application/json", 400, "malformed_json"),
        (b'{"a": "' + b"x" * 2000 + b'"}', "application/json", 413, "payload_too_large"),
    ],
)
async def test_a_body_that_is_not_a_small_json_object_is_refused(
    client: httpx.AsyncClient, content: bytes, content_type: str | None, status: int, code: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/body", content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_a_chunked_body_over_the_limit_is_refused_while_streaming(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 200

    response = await client.post(
        "/body", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def fields_of(body: dict[str, Any], *allowed: str) -> Fields:
    return Fields(body, allowed=allowed or tuple(body))


def test_fields_collect_every_problem_before_failing() -> None:
    fields = Fields({"title": 5, "kind": "triangle", "extra": True}, allowed={"title", "kind"})
    fields.text("title", required=True, max_length=10)
    fields.choice("kind", ("direct", "group"), required=True)
    with pytest.raises(ValidationFailed) as failed:
        fields.finish()
    problem = failed.value.to_problem()
    assert problem["code"] == "validation_failed"
    assert {error["field"] for error in problem["errors"]} == {"title", "kind", "extra"}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("  Design review  ", "Design review"),
        ("مراجعة التصميم", "مراجعة التصميم"),  # RTL
        ("zero\u200bwidth", "zero\u200bwidth"),
        ("🎉" * 20, "🎉" * 20),  # astral-plane characters count once each
        ("🎉" * 21, None),
        ("nul\x00byte", None),
        ("lone \ud800 surrogate", None),
        ("two\nlines", None),
        ("bell\x07", None),
        ("", None),
    ],
)
def test_single_line_text_accepts_unicode_and_refuses_what_cannot_be_stored(
    value: str, accepted: str | None
) -> None:
    fields = fields_of({"title": value})
    assert fields.text("title", max_length=20, min_length=1) == accepted
    assert (fields.errors == []) == (accepted is not None)


def test_multi_line_text_keeps_newlines_and_tabs() -> None:
    fields = fields_of({"body": "line one\n\tline two\r\n"})
    assert fields.text("body", max_length=100, single_line=False, strip=False) == (
        "line one\n\tline two\r\n"
    )
    assert fields.errors == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["alice", "bob"], None),
        (["alice", "machine:reports-bot"], None),
        (["alice", "alice"], "twice"),
        (["alice", 7], "string"),
        ([""], "string"),
        (["with space"], "whitespace"),
        (["x" * (MAX_IDENTIFIER_LENGTH + 1)], "characters"),
        ("alice", "list"),
        (["a", "b", "c", "d"], "Must hold"),
    ],
)
def test_identifier_lists_are_distinct_well_formed_ids(value: Any, problem: str | None) -> None:
    fields = fields_of({"member_ids": value})
    result = fields.identifier_list("member_ids", max_items=3)
    if problem is None:
        assert result == value
        assert fields.errors == []
    else:
        assert result is None
        assert problem in json.dumps(fields.errors)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0192e0a3-7c1e-7cc1-8f6e-6b0c1b7f2a11", True),
        ("0192E0A3-7C1E-7CC1-8F6E-6B0C1B7F2A11", True),
        ("0192e0a37c1e7cc18f6e6b0c1b7f2a11", False),
        ("{0192e0a3-7c1e-7cc1-8f6e-6b0c1b7f2a11}", False),
        (42, False),
    ],
)
def test_uuid_fields_must_be_canonical(value: Any, valid: bool) -> None:
    fields = fields_of({"reply_to": value})
    assert (fields.uuid("reply_to") is not None) == valid


def test_integers_refuse_booleans_and_out_of_range_values() -> None:
    for value in (True, 1.0, "1", -1, 10**20):
        fields = fields_of({"seq": value})
        assert fields.integer("seq", minimum=0, maximum=2**62) is None
    assert fields_of({"seq": 7}).integer("seq", minimum=0, maximum=10) == 7


def test_missing_required_fields_are_named_and_optional_ones_are_none() -> None:
    fields = Fields({}, allowed={"title", "description"})
    assert fields.text("description", max_length=10) is None
    fields.text("title", required=True, max_length=10)
    assert fields.errors == [{"field": "title", "message": "Required."}]


@pytest.mark.parametrize(
    ("query", "status", "expected"),
    [
        ("", 200, {"limit": 20, "q": None}),
        ("?limit=200&q=hello", 200, {"limit": 200, "q": "hello"}),
        ("?limit=0", 422, None),
        ("?limit=201", 422, None),
        ("?limit=ten", 422, None),
        ("?limit=99999999999999999999999", 422, None),
        ("?q=%00", 422, None),
        ("?q=" + "x" * 11, 422, None),
    ],
)
async def test_query_parameters_are_checked(
    client: httpx.AsyncClient, query: str, status: int, expected: dict[str, Any] | None
) -> None:
    response = await client.get("/query" + query)
    assert response.status_code == status
    if expected is not None:
        assert response.json() == expected


@pytest.mark.parametrize("value", ["not-a-uuid", "1", "0192e0a37c1e7cc18f6e6b0c1b7f2a11"])
async def test_a_malformed_path_id_is_simply_not_found(
    client: httpx.AsyncClient, value: str
) -> None:
    response = await client.get(f"/things/{value}")
    assert response.status_code == 404
    assert response.json()["code"] == "conversation_not_found"


def test_a_cursor_round_trips_its_position() -> None:
    position = {"at": "2026-11-22T10:00:00Z", "id": "c-1", "seq": 41}
    cursor = encode_cursor(position)
    assert cursor.isascii()
    assert "=" not in cursor
    assert decode_cursor(cursor, keys={"at": str, "id": str, "seq": int}) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        encode_cursor({"seq": "41"}),  # wrong type
        encode_cursor({"seq": 41, "more": 1}),  # unexpected key
        encode_cursor({}),
        "x" * 600,
        "ü",
    ],
)
def test_a_malformed_or_forged_cursor_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ParleyError) as refused:
        decode_cursor(cursor, keys={"seq": int})
    assert refused.value.status == 422
    assert refused.value.instance_code == "invalid_cursor"
