"""Faults lose nothing: conversations_service down means a clean 503 and no write, and service
resumes without a restart; activity reaches conversations_service. (Redis outages:
test_redis_outage.py.)"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.messages_service.conftest import (
    Chat,
    ConversationsServer,
    collected_events,
    eventually,
)


async def last_seq_at_conversations(chat: Chat, caller: Any, conversation_id: str) -> Any:
    response = await chat.http.get(
        f"{chat.conversations_url}/api/conversations/{conversation_id}", headers=caller.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["last_seq"]


async def test_with_conversations_service_down_sends_are_503_and_write_nothing(
    chat: Chat, conversations: ConversationsServer
) -> None:
    alice = chat.person()
    conversation_id = await chat.group(alice)

    await conversations.stop()
    try:
        refused = await chat.send(alice, conversation_id, "hello?", client_msg_id="first")
        unread = await chat.call(alice, "GET", "/api/unread")
        history = await chat.call(alice, "GET", f"/api/conversations/{conversation_id}/messages")
    finally:
        await conversations.start()

    for response in (refused, unread, history):
        assert response.status_code == 503
        assert response.json()["code"] == "upstream_unavailable"
        assert int(response.headers["retry-after"]) >= 1

    # No restart of messages_service: a client that waits as Retry-After says gets through
    # once the circuit breaker lets a trial call reach the restarted conversations_service.
    for _ in range(10):
        retried = await chat.send(alice, conversation_id, "hello?", client_msg_id="first")
        if retried.status_code != 503:
            break
        await asyncio.sleep(int(retried.headers["retry-after"]))
    assert retried.status_code == 201, retried.text
    items = (await chat.history(alice, conversation_id))["items"]
    assert [(m["seq"], m["client_msg_id"]) for m in items] == [(1, "first")]


async def test_activity_reaches_conversations_service(chat: Chat) -> None:
    alice = chat.person()
    conversation_id = await chat.group(alice)
    for body in ("one", "two", "three"):
        await chat.message(alice, conversation_id, body)

    async def reported() -> bool:
        return await last_seq_at_conversations(chat, alice, conversation_id) == 3

    await eventually(reported, within_seconds=10)


async def test_each_message_event_names_the_members(
    chat: Chat, redis_url: str, event_namespace: str
) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    client_msg_id = uuid.uuid4().hex

    async with collected_events(redis_url, event_namespace) as events:
        sent = await chat.send(alice, conversation_id, "hi", client_msg_id=client_msg_id)
        await chat.send(alice, conversation_id, "hi", client_msg_id=client_msg_id)  # no event
        await eventually(lambda: any(e.type == "message.created" for e in events))

    [created] = [e for e in events if e.type == "message.created"]
    assert created.data == sent.json()
    assert created.position == 1
    assert sorted(created.user_ids) == sorted([alice.id, bob.id])
