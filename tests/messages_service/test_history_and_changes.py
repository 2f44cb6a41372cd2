"""History pages by seq in both directions; edits, deletes (tombstones), reactions and receipts,
each with the event it publishes."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.messages_service.conftest import Chat, collected_events, eventually


async def conversation_with(chat: Chat, count: int) -> tuple[Any, str]:
    alice = chat.person()
    conversation_id = await chat.group(alice)
    for number in range(1, count + 1):
        await chat.message(alice, conversation_id, f"m{number}")
    return alice, conversation_id


async def test_history_pages_backwards_from_the_newest(chat: Chat) -> None:
    alice, conversation_id = await conversation_with(chat, 7)

    first = await chat.history(alice, conversation_id, limit=3)
    second = await chat.history(alice, conversation_id, limit=3, before=first["items"][-1]["seq"])
    third = await chat.history(alice, conversation_id, limit=3, before=second["items"][-1]["seq"])

    assert [m["seq"] for m in first["items"]] == [7, 6, 5]
    assert [m["seq"] for m in second["items"]] == [4, 3, 2]
    assert [m["seq"] for m in third["items"]] == [1]
    assert (first["has_more"], second["has_more"], third["has_more"]) == (True, True, False)


async def test_history_pages_forwards_after_a_seq(chat: Chat) -> None:
    alice, conversation_id = await conversation_with(chat, 5)

    first = await chat.history(alice, conversation_id, after=0, limit=2)
    second = await chat.history(alice, conversation_id, after=2, limit=2)
    last = await chat.history(alice, conversation_id, after=4, limit=2)
    beyond = await chat.history(alice, conversation_id, after=5)

    assert [m["body"] for m in first["items"]] == ["m1", "m2"]
    assert [m["seq"] for m in second["items"]] == [3, 4]
    assert ([m["seq"] for m in last["items"]], last["has_more"]) == ([5], False)
    assert beyond == {"items": [], "has_more": False}


async def test_history_of_a_conversation_without_messages_is_empty(chat: Chat) -> None:
    alice = chat.person()
    conversation_id = await chat.group(alice)
    assert await chat.history(alice, conversation_id) == {"items": [], "has_more": False}


async def test_the_author_edits_and_others_cannot(
    chat: Chat, redis_url: str, event_namespace: str
) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    message = await chat.message(alice, conversation_id, "draft")
    path = f"/api/messages/{message['id']}"

    async with collected_events(redis_url, event_namespace) as events:
        edited = await chat.call(alice, "PATCH", path, json={"body": f"final @[{bob.id}]"})
        by_bob = await chat.call(bob, "PATCH", path, json={"body": "hijacked"})
        await eventually(lambda: any(e.type == "message.updated" for e in events))

    assert edited.status_code == 200
    assert edited.json()["body"] == f"final @[{bob.id}]"
    assert edited.json()["edited_at"] is not None
    assert edited.json()["mentions"] == [bob.id]
    assert edited.json()["seq"] == message["seq"]
    assert (by_bob.status_code, by_bob.json()["code"]) == (403, "not_author")
    history = await chat.history(bob, conversation_id)
    assert history["items"][0]["body"] == f"final @[{bob.id}]"
    [updated] = [e for e in events if e.type == "message.updated"]
    assert updated.conversation_id == conversation_id
    assert updated.data["body"] == f"final @[{bob.id}]"
    assert sorted(updated.user_ids) == sorted([alice.id, bob.id])


async def test_a_deleted_message_stays_as_a_tombstone(
    chat: Chat, redis_url: str, event_namespace: str
) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    message = await chat.message(alice, conversation_id, f"secret for @[{bob.id}]")
    await chat.message(alice, conversation_id, "after")
    path = f"/api/messages/{message['id']}"
    await chat.call(bob, "PUT", f"{path}/reactions/👍")

    async with collected_events(redis_url, event_namespace) as events:
        by_bob = await chat.call(bob, "DELETE", path)
        deleted = await chat.call(alice, "DELETE", path)
        again = await chat.call(alice, "DELETE", path)
        edit = await chat.call(alice, "PATCH", path, json={"body": "undo"})
        react = await chat.call(bob, "PUT", f"{path}/reactions/👍")
        await eventually(lambda: any(e.type == "message.deleted" for e in events))
        await asyncio.sleep(0.1)

    assert (by_bob.status_code, by_bob.json()["code"]) == (403, "not_author")
    assert (deleted.status_code, again.status_code) == (204, 204)
    assert (edit.status_code, edit.json()["code"]) == (409, "message_deleted")
    assert (react.status_code, react.json()["code"]) == (409, "message_deleted")
    items = (await chat.history(bob, conversation_id))["items"]
    assert [m["seq"] for m in items] == [2, 1]
    tombstone = items[1]
    assert tombstone["deleted"] is True
    assert tombstone["body"] is None
    assert (tombstone["mentions"], tombstone["reactions"]) == ([], [])
    assert [e.type for e in events] == ["message.deleted"]  # once, for the first delete only
    assert events[0].data["deleted"] is True
    assert events[0].data["body"] is None


async def test_reactions_are_one_per_person_per_emoji_with_counts_and_who(
    chat: Chat, redis_url: str, event_namespace: str
) -> None:
    alice, bob, carol = chat.person(), chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob, carol)
    message = await chat.message(alice, conversation_id, "ship it?")
    path = f"/api/messages/{message['id']}/reactions"

    async with collected_events(redis_url, event_namespace) as events:
        await chat.call(bob, "PUT", f"{path}/👍")
        twice = await chat.call(bob, "PUT", f"{path}/👍")
        await chat.call(carol, "PUT", f"{path}/👍")
        await chat.call(carol, "PUT", f"{path}/%F0%9F%8E%89")  # 🎉, percent-encoded
        await chat.call(alice, "PUT", f"{path}/:shipit:")
        removed = await chat.call(carol, "DELETE", f"{path}/👍")
        not_there = await chat.call(carol, "DELETE", f"{path}/👍")
        await eventually(lambda: len(events) == 5)

    assert twice.status_code == 200
    assert twice.json()["reactions"] == [{"emoji": "👍", "count": 1, "user_ids": [bob.id]}]
    assert removed.status_code == 200
    assert not_there.status_code == 200
    expected = [
        {"emoji": "👍", "count": 1, "user_ids": [bob.id]},
        {"emoji": "🎉", "count": 1, "user_ids": [carol.id]},
        {"emoji": ":shipit:", "count": 1, "user_ids": [alice.id]},
    ]
    assert not_there.json()["reactions"] == expected
    assert (await chat.history(alice, conversation_id))["items"][0]["reactions"] == expected
    changes = [(e.data["emoji"], e.data["user_id"], e.data["action"]) for e in events]
    assert changes == [
        ("👍", bob.id, "added"),
        ("👍", carol.id, "added"),
        ("🎉", carol.id, "added"),
        (":shipit:", alice.id, "added"),
        ("👍", carol.id, "removed"),
    ]
    assert all(e.type == "reaction.changed" for e in events)


async def test_event_positions_count_every_change_of_a_conversation(
    chat: Chat, redis_url: str, event_namespace: str
) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)

    async with collected_events(redis_url, event_namespace) as events:
        first = await chat.message(alice, conversation_id, "one")
        await chat.message(bob, conversation_id, "two")
        await chat.call(bob, "PUT", f"/api/messages/{first['id']}/reactions/👀")
        await chat.call(alice, "PATCH", f"/api/messages/{first['id']}", json={"body": "uno"})
        await chat.read(alice, conversation_id, 2)
        await chat.call(alice, "DELETE", f"/api/messages/{first['id']}")
        await eventually(lambda: len(events) == 6)

    ours = sorted((e for e in events if e.conversation_id == conversation_id), key=_position)
    assert [e.position for e in ours] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in ours] == [
        "message.created",
        "message.created",
        "reaction.changed",
        "message.updated",
        "receipt.updated",
        "message.deleted",
    ]
    assert ours[0].data["seq"] == 1
    assert ours[1].data["body"] == "two"


def _position(event: Any) -> int:
    return int(event.position)


async def test_receipts_say_who_has_read_and_received_a_message(chat: Chat) -> None:
    alice, bob, carol = chat.person(), chat.person(), chat.person()
    outsider = chat.person()
    conversation_id = await chat.group(alice, bob, carol)
    first = await chat.message(alice, conversation_id, "one")
    second = await chat.message(alice, conversation_id, "two")
    await chat.read(bob, conversation_id, 2)
    delivered = await chat.call(
        carol, "POST", f"/api/conversations/{conversation_id}/delivered", json={"seq": 1}
    )

    first_receipts = await chat.call(bob, "GET", f"/api/messages/{first['id']}/receipts")
    second_receipts = await chat.call(alice, "GET", f"/api/messages/{second['id']}/receipts")
    hidden = await chat.call(outsider, "GET", f"/api/messages/{first['id']}/receipts")

    assert delivered.status_code == 200
    assert delivered.json()["delivered_seq"] == 1
    assert first_receipts.status_code == 200
    assert first_receipts.json()["read_by"] == [bob.id]
    assert first_receipts.json()["delivered_to"] == sorted([bob.id, carol.id])
    assert second_receipts.json()["read_by"] == [bob.id]
    assert second_receipts.json()["delivered_to"] == [bob.id]
    assert (hidden.status_code, hidden.json()["code"]) == (404, "message_not_found")


async def test_receipts_are_refused_for_conversations_beyond_the_size_limit(chat: Chat) -> None:
    owner = chat.person()
    conversation_id = await chat.group(owner, *(chat.person() for _ in range(100)))
    message = await chat.message(owner, conversation_id, "hello, all 101 of you")

    response = await chat.call(owner, "GET", f"/api/messages/{message['id']}/receipts")

    assert (response.status_code, response.json()["code"]) == (409, "conversation_too_large")
