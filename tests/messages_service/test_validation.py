"""Hostile and malformed input gets a clean 4xx problem, never a 5xx, and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.messages_service.conftest import Caller, Chat

RAW_BODIES = [
    pytest.param(b"{not json", "application/json", 400, "malformed_json", id="malformed-json"),
    pytest.param(b"[1, 2]", "application/json", 400, "malformed_json", id="not-an-object"),
    pytest.param(b'{"body": NaN}', "application/json", 400, "malformed_json", id="nan"),
    pytest.param(b"\xff\xfe", "application/json", 400, "malformed_json", id="not-utf8"),
    pytest.param(b'{"body": "x"}', "text/plain", 415, "unsupported_media_type", id="text-plain"),
    pytest.param(
        b'{"body": "' + b"x" * 70_000 + b'"}',
        "application/json",
        413,
        "payload_too_large",
        id="huge-body",
    ),
]

INVALID_SENDS = [
    pytest.param({"client_msg_id": "a"}, "body", id="no-body"),
    pytest.param({"body": 5, "client_msg_id": "a"}, "body", id="body-not-string"),
    pytest.param({"body": "", "client_msg_id": "a"}, "body", id="empty-body"),
    pytest.param({"body": " \n\t ", "client_msg_id": "a"}, "body", id="blank-body"),
    pytest.param({"body": "x" * 4001, "client_msg_id": "a"}, "body", id="too-long"),
    pytest.param({"body": "nul \x00 here", "client_msg_id": "a"}, "body", id="nul"),
    pytest.param({"body": "bell \x07", "client_msg_id": "a"}, "body", id="control-character"),
    pytest.param({"body": "lone \ud800", "client_msg_id": "a"}, "body", id="lone-surrogate"),
    pytest.param({"body": "hi"}, "client_msg_id", id="no-client-msg-id"),
    pytest.param({"body": "hi", "client_msg_id": ""}, "client_msg_id", id="empty-client-msg-id"),
    pytest.param({"body": "hi", "client_msg_id": "x" * 65}, "client_msg_id", id="long-id"),
    pytest.param({"body": "hi", "client_msg_id": "a b"}, "client_msg_id", id="id-with-space"),
    pytest.param({"body": "hi", "client_msg_id": 7}, "client_msg_id", id="id-not-string"),
    pytest.param({"body": "hi", "client_msg_id": "a", "reply_to": "x"}, "reply_to", id="reply"),
    pytest.param({"body": "hi", "client_msg_id": "a", "reply_to": 1}, "reply_to", id="reply-int"),
    pytest.param({"body": "hi", "client_msg_id": "a", "sender": "eve"}, "sender", id="extra"),
]


async def member_of_a_conversation(chat: Chat) -> tuple[Caller, str]:
    alice = chat.person()
    return alice, await chat.group(alice)


@pytest.mark.parametrize(("content", "media_type", "status", "code"), RAW_BODIES)
async def test_bodies_that_are_not_json_objects_are_refused(
    chat: Chat, content: bytes, media_type: str, status: int, code: str
) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)
    message = await chat.message(alice, conversation_id, "original")
    targets = [
        ("POST", f"/api/conversations/{conversation_id}/messages"),
        ("POST", f"/api/conversations/{conversation_id}/read"),
        ("PATCH", f"/api/messages/{message['id']}"),
    ]
    for method, path in targets:
        response = await chat.call(
            alice, method, path, content=content, headers={"Content-Type": media_type}
        )
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
    assert [m["body"] for m in (await chat.history(alice, conversation_id))["items"]] == [
        "original"
    ]


@pytest.mark.parametrize(("document", "field"), INVALID_SENDS)
async def test_invalid_sends_are_422_naming_the_field_and_store_nothing(
    chat: Chat, document: dict[str, Any], field: str
) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)

    # Sent ASCII-escaped, so a lone surrogate arrives as the JSON escape "\ud800".
    response = await chat.call(
        alice,
        "POST",
        f"/api/conversations/{conversation_id}/messages",
        content=json.dumps(document),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert (await chat.history(alice, conversation_id))["items"] == []


async def test_invalid_edits_are_422_and_change_nothing(chat: Chat) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)
    message = await chat.message(alice, conversation_id, "original")
    path = f"/api/messages/{message['id']}"
    for document in ({}, {"body": ""}, {"body": "\x00"}, {"body": "x" * 4001}, {"body": None}):
        response = await chat.call(alice, "PATCH", path, json=document)
        assert response.status_code == 422, document
    history = await chat.history(alice, conversation_id)
    assert [(m["body"], m["edited_at"]) for m in history["items"]] == [("original", None)]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "201"},
        {"limit": "0"},
        {"limit": "ten"},
        {"before": "0"},
        {"before": "-1"},
        {"after": "1.5"},
        {"after": "99999999999999999999999"},
        {"before": "3", "after": "1"},
    ],
)
async def test_invalid_history_parameters_are_422(chat: Chat, params: dict[str, str]) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)
    response = await chat.call(
        alice, "GET", f"/api/conversations/{conversation_id}/messages", params=params
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "document", [{}, {"seq": "1"}, {"seq": -1}, {"seq": 1.0}, {"seq": True}, {"seq": 2**63}]
)
async def test_invalid_pointer_moves_are_422(chat: Chat, document: dict[str, Any]) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)
    await chat.message(alice, conversation_id, "one")
    for pointer in ("read", "delivered"):
        response = await chat.call(
            alice, "POST", f"/api/conversations/{conversation_id}/{pointer}", json=document
        )
        assert response.status_code == 422, (pointer, document)


@pytest.mark.parametrize(
    "emoji",
    [
        "x" * 33,
        "two%20words",
        "tab%09",
        "nul%00",
        "%E2%80%A8",  # line separator
        "%C2%85",  # next line (C1 control)
    ],
)
async def test_invalid_emoji_are_422(chat: Chat, emoji: str) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)
    message = await chat.message(alice, conversation_id, "react to me")
    for method in ("PUT", "DELETE"):
        response = await chat.call(
            alice, method, f"/api/messages/{message['id']}/reactions/{emoji}"
        )
        assert response.status_code == 422, (method, emoji, response.text)
        assert response.json()["code"] == "invalid_emoji"
    assert (await chat.history(alice, conversation_id))["items"][0]["reactions"] == []


async def test_unlisted_methods_are_405(chat: Chat) -> None:
    alice, conversation_id = await member_of_a_conversation(chat)
    for method, path in (
        ("PUT", f"/api/conversations/{conversation_id}/messages"),
        ("GET", f"/api/conversations/{conversation_id}/read"),
        ("POST", "/api/unread"),
    ):
        response = await chat.call(alice, method, path)
        assert response.status_code == 405, (method, path)
