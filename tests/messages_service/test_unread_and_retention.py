"""Read pointers move forward only; unread and mention counts stay exact through sends, reads,
edits, deletes and retention; retention deletes old messages with what hangs on them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from parley import cli
from servicekit.db import Database
from tests.messages_service.conftest import (
    Caller,
    Chat,
    MessagesStarter,
    collected_events,
    eventually,
)


@pytest.fixture(scope="module")
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


async def age_messages(database: Database, conversation_id: str, through_seq: int) -> None:
    """Make messages 1..through_seq of a conversation 400 days old, as time would."""
    await database.transaction(
        lambda connection: connection.execute(
            text(
                "UPDATE messages.messages SET created_at = created_at - interval '400 days'"
                " WHERE conversation_id = :conversation_id AND seq <= :seq"
            ),
            {"conversation_id": conversation_id, "seq": through_seq},
        )
    )


async def counts(chat: Chat, caller: Caller, conversation_id: str) -> dict[str, int] | None:
    return (await chat.unread(caller)).get(conversation_id)


async def test_read_pointers_move_forward_only(
    chat: Chat, redis_url: str, event_namespace: str
) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    for body in ("a", "b", "c"):
        await chat.message(alice, conversation_id, body)

    async with collected_events(redis_url, event_namespace) as events:
        forward = await chat.read(bob, conversation_id, 2)
        backward = await chat.read(bob, conversation_id, 1)
        same = await chat.read(bob, conversation_id, 2)
        beyond = await chat.read(bob, conversation_id, 4)
        await eventually(lambda: len(events) >= 1)
        await asyncio.sleep(0.1)

    assert forward.json() == {
        "conversation_id": conversation_id,
        "user_id": bob.id,
        "read_seq": 2,
        "delivered_seq": 2,
    }
    assert backward.status_code == 200
    assert backward.json()["read_seq"] == 2
    assert same.json()["read_seq"] == 2
    assert (beyond.status_code, beyond.json()["code"]) == (422, "seq_out_of_range")
    assert [(e.type, e.data["read_seq"]) for e in events] == [("receipt.updated", 2)]
    assert await counts(chat, bob, conversation_id) == {"unread": 1, "mentions": 0, "last_seq": 3}


async def test_delivery_pointers_move_forward_only_and_never_pass_the_newest(chat: Chat) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    await chat.message(alice, conversation_id, "a")
    await chat.message(alice, conversation_id, "b")
    path = f"/api/conversations/{conversation_id}/delivered"

    forward = await chat.call(bob, "POST", path, json={"seq": 2})
    backward = await chat.call(bob, "POST", path, json={"seq": 1})
    beyond = await chat.call(bob, "POST", path, json={"seq": 3})

    assert (forward.json()["delivered_seq"], forward.json()["read_seq"]) == (2, 0)
    assert backward.json()["delivered_seq"] == 2
    assert beyond.status_code == 422
    # Delivery is not reading.
    assert await counts(chat, bob, conversation_id) == {"unread": 2, "mentions": 0, "last_seq": 2}


async def test_unread_counts_stay_exact_through_sends_reads_edits_deletes_and_retention(
    chat: Chat, database: Database, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    alice, bob, carol = chat.person(), chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob, carol)
    quiet = await chat.group(alice, bob)
    mention = f"@[{bob.id}]"

    sent = [
        await chat.message(alice, conversation_id, "one"),
        await chat.message(alice, conversation_id, f"two {mention}"),
        await chat.message(carol, conversation_id, "three"),
        await chat.message(alice, conversation_id, "four"),
        await chat.message(carol, conversation_id, f"five {mention}"),
    ]
    # Sends: the sender's own messages are never unread for them.
    assert await counts(chat, bob, conversation_id) == {"unread": 5, "mentions": 2, "last_seq": 5}
    assert await counts(chat, carol, conversation_id) is None  # read through her own seq 5
    assert await counts(chat, alice, conversation_id) == {
        "unread": 1,
        "mentions": 0,
        "last_seq": 5,
    }
    assert quiet not in await chat.unread(bob)  # nothing was ever said there

    # Reads.
    await chat.read(bob, conversation_id, 1)
    assert await counts(chat, bob, conversation_id) == {"unread": 4, "mentions": 2, "last_seq": 5}

    # Edits change no count, unless they change who is mentioned.
    await chat.call(alice, "PATCH", f"/api/messages/{sent[3]['id']}", json={"body": "4"})
    assert await counts(chat, bob, conversation_id) == {"unread": 4, "mentions": 2, "last_seq": 5}
    await chat.call(alice, "PATCH", f"/api/messages/{sent[1]['id']}", json={"body": "two"})
    assert await counts(chat, bob, conversation_id) == {"unread": 4, "mentions": 1, "last_seq": 5}

    # Deletes: a deleted unread message stops counting; a deleted read one changes nothing.
    await chat.call(alice, "DELETE", f"/api/messages/{sent[3]['id']}")
    await chat.call(alice, "DELETE", f"/api/messages/{sent[0]['id']}")
    assert await counts(chat, bob, conversation_id) == {"unread": 3, "mentions": 1, "last_seq": 5}

    # Retention: messages 1..3 expire; 2 and 3 were unread.
    await age_messages(database, conversation_id, 3)
    monkeypatch.setenv("DATABASE_URL", database.engine.url.render_as_string(False))
    exit_code = await asyncio.to_thread(cli.main, ["retention", "run"])
    assert exit_code == 0
    assert "deleted 3 messages older than 365 days" in capsys.readouterr().out
    # Left: 4 (deleted) and 5 (unread, mentions bob).
    assert await counts(chat, bob, conversation_id) == {"unread": 1, "mentions": 1, "last_seq": 5}
    history = await chat.history(bob, conversation_id, after=0)
    assert [(m["seq"], m["deleted"]) for m in history["items"]] == [(4, True), (5, False)]

    # Reading everything empties the list; a new message starts it again.
    await chat.read(bob, conversation_id, 5)
    assert await counts(chat, bob, conversation_id) is None
    await chat.message(alice, conversation_id, "six")
    assert await counts(chat, bob, conversation_id) == {"unread": 1, "mentions": 0, "last_seq": 6}


async def test_retention_deletes_reactions_mentions_and_search_entries(
    chat: Chat, database: Database
) -> None:
    from messages_service.retention import purge_expired_messages

    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)
    old = await chat.message(alice, conversation_id, f"ancient zebra @[{bob.id}]")
    await chat.call(bob, "PUT", f"/api/messages/{old['id']}/reactions/🦓")
    young = await chat.message(alice, conversation_id, "young zebra")
    await age_messages(database, conversation_id, 1)

    deleted = await purge_expired_messages(database, 365, batch_size=1)

    assert deleted == 1
    leftovers = await database.transaction(
        lambda connection: connection.execute(
            text(
                "SELECT (SELECT count(*) FROM messages.reactions WHERE conversation_id = :c),"
                " (SELECT count(*) FROM messages.mentions WHERE conversation_id = :c),"
                " (SELECT count(*) FROM messages.search_entries WHERE conversation_id = :c)"
            ),
            {"c": conversation_id},
        )
    )
    assert leftovers.one() == (0, 0, 1)  # only the young message is still searchable
    receipts = await chat.call(alice, "GET", f"/api/messages/{old['id']}/receipts")
    assert receipts.status_code == 404
    history = await chat.history(alice, conversation_id)
    assert [m["id"] for m in history["items"]] == [young["id"]]


async def test_the_periodic_job_deletes_expired_messages(
    chat: Chat, database: Database, start_messages: MessagesStarter
) -> None:
    alice = chat.person()
    conversation_id = await chat.group(alice)
    for body in ("old", "new"):
        await chat.message(alice, conversation_id, body)
    await age_messages(database, conversation_id, 1)

    async with start_messages(RETENTION_DAYS="30", RETENTION_INTERVAL_SECONDS="1"):

        async def purged() -> bool:
            history = await chat.history(alice, conversation_id, after=0)
            return [m["body"] for m in history["items"]] == ["new"]

        await eventually(purged, within_seconds=5)
