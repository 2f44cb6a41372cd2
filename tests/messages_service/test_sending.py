"""Sending: gap-free ordered seqs under concurrency, idempotent retries, replies, mentions,
bodies stored as written, the per-sender rate limit and machine scopes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx

from tests.messages_service.conftest import Chat


async def test_100_concurrent_sends_get_seqs_1_to_100_exactly(chat: Chat) -> None:
    owner = chat.person()
    senders = [chat.person() for _ in range(9)]
    conversation_id = await chat.group(owner, *senders)
    everyone = [owner, *senders]

    responses = await asyncio.gather(
        *(chat.send(everyone[i % 10], conversation_id, f"message {i}") for i in range(100))
    )

    assert [r.status_code for r in responses] == [201] * 100
    assert sorted(r.json()["seq"] for r in responses) == list(range(1, 101))
    history = await chat.history(owner, conversation_id, after=0, limit=200)
    assert [m["seq"] for m in history["items"]] == list(range(1, 101))
    assert sorted(m["body"] for m in history["items"]) == sorted(f"message {i}" for i in range(100))
    # created_at never decreases along seq (retention relies on it).
    stamps = [m["created_at"] for m in history["items"]]
    assert stamps == sorted(stamps)


async def test_a_send_retried_after_a_client_timeout_yields_one_message(chat: Chat) -> None:
    owner = chat.person()
    conversation_id = await chat.group(owner)
    client_msg_id = uuid.uuid4().hex

    # The first attempt is abandoned by the client; it may or may not have been stored.
    with contextlib.suppress(TimeoutError, httpx.TimeoutException):
        async with asyncio.timeout(0.02):
            await chat.send(owner, conversation_id, "once", client_msg_id=client_msg_id)
    retried = await chat.send(owner, conversation_id, "once", client_msg_id=client_msg_id)
    again = await chat.send(owner, conversation_id, "once", client_msg_id=client_msg_id)

    assert retried.status_code in (200, 201)
    assert again.status_code == 200
    assert again.json() == retried.json()
    await asyncio.sleep(0.2)  # let an abandoned first attempt finish, if it is still running
    history = await chat.history(owner, conversation_id)
    assert [m["id"] for m in history["items"]] == [retried.json()["id"]]
    assert history["items"][0]["seq"] == 1


async def test_concurrent_identical_sends_store_one_message(chat: Chat) -> None:
    owner = chat.person()
    conversation_id = await chat.group(owner)
    client_msg_id = uuid.uuid4().hex

    responses = await asyncio.gather(
        *(chat.send(owner, conversation_id, "dup", client_msg_id=client_msg_id) for _ in range(8))
    )

    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    next_one = await chat.message(owner, conversation_id, "next")
    assert next_one["seq"] == 2  # the losers left no gap


async def test_the_same_client_msg_id_from_another_sender_is_another_message(chat: Chat) -> None:
    alice, bob = chat.person(), chat.person()
    conversation_id = await chat.group(alice, bob)

    first = await chat.send(alice, conversation_id, "hi", client_msg_id="same")
    second = await chat.send(bob, conversation_id, "hi", client_msg_id="same")

    assert (first.status_code, second.status_code) == (201, 201)
    assert (first.json()["seq"], second.json()["seq"]) == (1, 2)


async def test_the_message_object_has_every_field(chat: Chat) -> None:
    alice = chat.person()
    conversation_id = await chat.group(alice)

    response = await chat.send(alice, conversation_id, "hello", client_msg_id="c-1")

    assert response.status_code == 201
    message = response.json()
    assert response.headers["location"] == f"/api/messages/{message['id']}"
    assert uuid.UUID(message["id"]).version == 7
    assert message["created_at"].endswith("Z")
    assert {k: v for k, v in message.items() if k not in ("id", "created_at")} == {
        "conversation_id": conversation_id,
        "seq": 1,
        "sender": alice.id,
        "client_msg_id": "c-1",
        "body": "hello",
        "reply_to": None,
        "edited_at": None,
        "deleted": False,
        "mentions": [],
        "reactions": [],
    }


async def test_bodies_are_stored_exactly_as_written(chat: Chat) -> None:
    alice = chat.person()
    conversation_id = await chat.group(alice)
    bodies = [
        "<script>alert('x')</script> **bold** & `code`",
        "  leading and trailing spaces  \n\tand a tab",
        "مرحبا بالعالم — RTL text with \u200f marks",
        "zero\u200bwidth\u200djoiner",
        "astral 🏳️‍🌈 👩‍👩‍👧‍👦 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "x" * 4000,
    ]

    sent = [await chat.message(alice, conversation_id, body) for body in bodies]

    assert [m["body"] for m in sent] == bodies
    history = await chat.history(alice, conversation_id, after=0)
    assert [m["body"] for m in history["items"]] == bodies


async def test_a_reply_names_a_message_of_the_same_conversation(chat: Chat) -> None:
    alice = chat.person()
    here, elsewhere = await chat.group(alice), await chat.group(alice)
    original = await chat.message(alice, here, "question?")
    foreign = await chat.message(alice, elsewhere, "other")

    reply = await chat.send(alice, here, "answer", reply_to=original["id"])
    wrong = await chat.send(alice, here, "answer", reply_to=foreign["id"])
    missing = await chat.send(alice, here, "answer", reply_to=str(uuid.uuid4()))

    assert reply.status_code == 201
    assert reply.json()["reply_to"] == original["id"]
    assert (wrong.status_code, wrong.json()["code"]) == (422, "reply_to_not_found")
    assert (missing.status_code, missing.json()["code"]) == (422, "reply_to_not_found")
    # A refused reply took no seq.
    assert (await chat.message(alice, here, "next"))["seq"] == 3


async def test_mentions_of_members_are_recorded(chat: Chat) -> None:
    alice, bob, carol = chat.person(), chat.person(), chat.person()
    outsider = chat.person()
    conversation_id = await chat.group(alice, bob, carol)

    message = await chat.message(
        alice,
        conversation_id,
        f"@[{carol.id}] and @[{bob.id}], again @[{carol.id}]; not @[{outsider.id}] "
        f"nor me @[{alice.id}] nor @{bob.id}",
    )

    assert message["mentions"] == [carol.id, bob.id]
    history = await chat.history(bob, conversation_id)
    assert sorted(history["items"][0]["mentions"]) == sorted([carol.id, bob.id])


async def test_sends_beyond_the_rate_limit_get_429_with_retry_after(chat: Chat) -> None:
    spammer = chat.person()
    nowhere = str(uuid.uuid4())  # counted all the same, and cheaper than real messages

    statuses = [(await chat.send(spammer, nowhere, "spam")).status_code for _ in range(30)]
    refused = await chat.send(spammer, nowhere, "spam")

    assert statuses == [404] * 30
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # Others are not affected.
    other = chat.person()
    assert (await chat.send(other, nowhere, "hi")).status_code == 404


async def test_machine_clients_act_within_their_scopes(chat: Chat) -> None:
    owner = chat.person()
    reader, writer = await chat.bot("chat.read"), await chat.bot("chat.read chat.write")
    conversation_id = await chat.group(owner, reader, writer)

    refused = await chat.send(reader, conversation_id, "beep")
    accepted = await chat.send(writer, conversation_id, "beep")
    read_history = await chat.call(reader, "GET", f"/api/conversations/{conversation_id}/messages")

    assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
    assert accepted.status_code == 201
    assert accepted.json()["sender"] == writer.id
    assert read_history.status_code == 200
    assert [m["body"] for m in read_history.json()["items"]] == ["beep"]


async def test_calls_without_a_valid_token_are_401(chat: Chat) -> None:
    conversation_id = str(uuid.uuid4())
    path = f"/api/conversations/{conversation_id}/messages"
    anonymous = await chat.call(None, "GET", path)
    forged = await chat.call(None, "GET", path, headers={"Authorization": "Bearer not.a.jwt"})
    assert (anonymous.status_code, forged.status_code) == (401, 401)
