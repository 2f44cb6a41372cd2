"""The IDOR matrix: a non-member gets exactly the 404 a non-existent conversation or message
gets, on every messages route, changes nothing, and learns nothing from unread or search."""

from __future__ import annotations

import uuid
from typing import Any

from tests.messages_service.conftest import Caller, Chat, eventually


def requests_about(conversation_id: str, message_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, json) of every route that names a conversation or a message."""
    conversation = f"/api/conversations/{conversation_id}"
    message = f"/api/messages/{message_id}"
    return [
        ("GET", f"{conversation}/messages", None),
        ("POST", f"{conversation}/messages", {"body": "hi", "client_msg_id": uuid.uuid4().hex}),
        ("POST", f"{conversation}/read", {"seq": 1}),
        ("POST", f"{conversation}/delivered", {"seq": 1}),
        ("PATCH", message, {"body": "mine now"}),
        ("DELETE", message, None),
        ("PUT", f"{message}/reactions/👍", None),
        ("DELETE", f"{message}/reactions/👍", None),
        ("GET", f"{message}/receipts", None),
    ]


async def answers(
    chat: Chat, caller: Caller, conversation_id: str, message_id: str
) -> list[tuple[int, str]]:
    results = []
    for method, path, body in requests_about(conversation_id, message_id):
        response = await chat.call(caller, method, path, json=body)
        results.append((response.status_code, response.json()["code"]))
    return results


EXPECTED_404S = [(404, "conversation_not_found")] * 4 + [(404, "message_not_found")] * 5


async def test_a_non_member_gets_404_on_every_route_and_changes_nothing(chat: Chat) -> None:
    alice, bob = chat.person(), chat.person()
    outsider = chat.person()
    conversation_id = await chat.group(alice, bob)
    message = await chat.message(alice, conversation_id, "members only")
    await chat.call(bob, "PUT", f"/api/messages/{message['id']}/reactions/👍")
    before = await chat.history(alice, conversation_id)

    as_outsider = await answers(chat, outsider, conversation_id, message["id"])
    as_nobody_knows = await answers(chat, outsider, str(uuid.uuid4()), str(uuid.uuid4()))

    assert as_outsider == EXPECTED_404S
    assert as_nobody_knows == EXPECTED_404S
    assert await chat.history(alice, conversation_id) == before
    assert (await chat.message(alice, conversation_id, "next"))["seq"] == 2


async def test_a_non_member_machine_client_gets_the_same_404s(chat: Chat) -> None:
    alice = chat.person()
    bot = await chat.bot()
    conversation_id = await chat.group(alice)
    message = await chat.message(alice, conversation_id, "members only")

    assert await answers(chat, bot, conversation_id, message["id"]) == EXPECTED_404S


async def test_invalid_ids_in_paths_are_the_same_404s(chat: Chat) -> None:
    alice = chat.person()
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-00000000000g", "1" * 36, "%00"):
        assert await answers(chat, alice, bad, bad) == EXPECTED_404S


async def test_unread_and_search_show_nothing_of_other_conversations(chat: Chat) -> None:
    alice, bob = chat.person(), chat.person()
    outsider = chat.person()
    conversation_id = await chat.group(alice, bob)
    await chat.message(alice, conversation_id, f"secret plan for @[{outsider.id}]")

    assert await chat.unread(outsider) == {}
    assert conversation_id in await chat.unread(bob)
    found = await chat.call(outsider, "GET", "/api/search", params={"q": "secret"})
    found_by_bob = await chat.call(bob, "GET", "/api/search", params={"q": "secret"})
    assert found.status_code == 200
    assert found.json()["items"] == []
    assert [item["conversation_id"] for item in found_by_bob.json()["items"]] == [conversation_id]


async def test_a_removed_member_loses_access_at_once(chat: Chat) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    await chat.message(bob, conversation_id, "still here")
    await chat.history(bob, conversation_id)  # bob's membership is now cached

    await chat.remove_member(alice, conversation_id, bob)

    async def refused() -> bool:
        response = await chat.send(bob, conversation_id, "still here?")
        return response.status_code == 404

    # The member.removed event invalidates the cache; the cache alone would allow 5 s.
    await eventually(refused, within_seconds=2.0)
    history = await chat.call(bob, "GET", f"/api/conversations/{conversation_id}/messages")
    assert (history.status_code, history.json()["code"]) == (404, "conversation_not_found")
    assert [m["body"] for m in (await chat.history(alice, conversation_id))["items"]] == [
        "still here"
    ]


async def test_a_new_member_gets_access_at_once(chat: Chat) -> None:
    alice, carol = chat.person(), chat.person()
    conversation_id = await chat.group(alice)
    await chat.message(alice, conversation_id, "welcome")
    assert (await chat.send(carol, conversation_id, "let me in")).status_code == 404

    response = await chat.http.post(
        f"{chat.conversations_url}/api/conversations/{conversation_id}/members",
        headers=alice.headers,
        json={"user_id": carol.id},
    )
    assert response.status_code in (200, 201), response.text

    async def admitted() -> bool:
        return (await chat.send(carol, conversation_id, "thanks")).status_code == 201

    await eventually(admitted, within_seconds=2.0)
