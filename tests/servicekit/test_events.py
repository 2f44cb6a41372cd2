"""The event bus against a real redis-server, including one that is stopped and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from parley.embedded import EmbeddedRedis, free_port
from servicekit import events
from servicekit.events import Event, EventBus, EventSubscriber, InvalidEvent

WAIT_SECONDS = 5.0  # generous bound for a delivery on loopback, which takes milliseconds


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    # Few, short client retries, so a publish while Redis is down fails within ~0.2 s.
    client = Redis.from_url(
        redis_server.url, retry=Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2)
    )
    yield client
    await client.aclose()


@pytest.fixture
def bus(redis: Redis) -> EventBus:
    return EventBus(redis, namespace=f"test-{uuid.uuid4().hex[:12]}")


class Inbox:
    """An event handler that keeps what it receives, for tests to await."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def __call__(self, event: Event) -> None:
        await self.queue.put(event)

    async def next(self) -> Event:
        return await asyncio.wait_for(self.queue.get(), WAIT_SECONDS)


async def wait_until(condition: Callable[[], bool], within: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(subscriber: EventSubscriber) -> AsyncIterator[EventSubscriber]:
    """``subscriber`` started and subscribed; events published from here on reach it."""
    async with subscriber:
        await wait_until(lambda: subscriber.connected)
        yield subscriber


def an_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {"type": "message.created", "data": {"body": "hello"}}
    return Event(**(fields | overrides))


# --- the envelope ---------------------------------------------------------------------------


def test_event_round_trips_through_json_with_every_field() -> None:
    event = an_event(
        position=42,
        conversation_id="c-1",
        user_ids=("alice", "bob"),
        data={"body": "héllo", "nested": {"list": [1, 2.5, None, True]}},
    )
    assert Event.from_json(event.to_json()) == event
    assert Event.from_json(event.to_json().encode()) == event
    assert uuid.UUID(event.id).version == 7
    assert event.version == 1
    assert event.occurred_at.endswith("Z")


def test_event_ignores_fields_it_does_not_know() -> None:
    event = an_event(position=3)
    payload = json.loads(event.to_json()) | {"trace": "added by a newer producer"}
    assert Event.from_json(json.dumps(payload)) == event


def _valid_payload() -> dict[str, Any]:
    return json.loads(an_event(position="p", user_ids=("u",)).to_json())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 2}, "version"),
        ({"version": "1"}, "version"),
        ({"version": True}, "version"),
        ({"id": "not-a-uuid"}, "id"),
        ({"type": ""}, "type"),
        ({"type": "Message Created"}, "type"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2025-01-01T10:00:00"}, "occurred_at"),  # no time zone
        ({"occurred_at": "2025-01-01T10:00:00+02:00"}, "occurred_at"),  # not UTC
        ({"data": [1, 2]}, "data"),
        ({"position": True}, "position"),
        ({"position": 1.5}, "position"),
        ({"conversation_id": 7}, "conversation_id"),
        ({"user_ids": "alice"}, "user_ids"),
        ({"user_ids": ["alice", 3]}, "user_ids"),
    ],
)
def test_event_rejects_an_invalid_field(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        Event.from_json(json.dumps(_valid_payload() | change))


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"\xff\xfe\x00", b"[1, 2]", b"null", b'{"version": 1}', b'{"data": NaN}'],
)
def test_event_rejects_a_malformed_payload(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        Event.from_json(raw)


def test_event_missing_version_is_rejected_rather_than_defaulted() -> None:
    payload = _valid_payload()
    del payload["version"]
    with pytest.raises(InvalidEvent, match="version"):
        Event.from_json(json.dumps(payload))


def test_event_with_unserialisable_data_cannot_be_encoded() -> None:
    with pytest.raises(InvalidEvent):
        an_event(data={"when": object()}).to_json()


def test_namespace_and_topic_are_validated() -> None:
    with pytest.raises(ValueError, match="namespace"):
        EventBus(Redis(), namespace="a:b*")
    with pytest.raises(ValueError, match="topic"):
        EventBus(Redis(), namespace="ok").channel("two words")
    assert EventBus(Redis(), namespace="ok").channel("user:42") == "ok:events:user:42"


# --- publish and subscribe ------------------------------------------------------------------


async def test_published_event_reaches_a_subscriber_with_every_field(bus: EventBus) -> None:
    inbox = Inbox()
    async with running(bus.subscribe(inbox, topics=["messages"])):
        event = an_event(position=7, conversation_id="c-1", user_ids=("alice", "bob"))
        assert await bus.publish(event, "messages") == 1
        assert await inbox.next() == event


async def test_namespaces_do_not_see_each_others_events(redis: Redis) -> None:
    bus_a = EventBus(redis, namespace=f"a-{uuid.uuid4().hex[:8]}")
    bus_b = EventBus(redis, namespace=f"b-{uuid.uuid4().hex[:8]}")
    inbox = Inbox()
    async with running(bus_a.subscribe(inbox, topics=["messages"], patterns=["*"])):
        assert await bus_b.publish(an_event(data={"from": "b"}), "messages") == 0
        await bus_a.publish(an_event(data={"from": "a"}), "messages")
        # Redis keeps the order of publishes, so once a's arrives, b's would have come first.
        assert (await inbox.next()).data == {"from": "a"}  # via the topic
        assert (await inbox.next()).data == {"from": "a"}  # and again via the pattern
        assert inbox.queue.empty()


async def test_pattern_subscription_receives_every_matching_topic(bus: EventBus) -> None:
    inbox = Inbox()
    async with running(bus.subscribe(inbox, topics=["conversations"], patterns=["user:*"])):
        for topic in ["user:alice", "messages", "user:bob", "conversations"]:
            await bus.publish(an_event(data={"topic": topic}), topic)
        received = [(await inbox.next()).data["topic"] for _ in range(3)]
    assert received == ["user:alice", "user:bob", "conversations"]


async def test_malformed_and_unknown_version_payloads_are_skipped(
    bus: EventBus, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    async with running(bus.subscribe(inbox, topics=["messages"])):
        future = json.loads(an_event().to_json()) | {"version": 2}
        for junk in [b"not json", b"\xff", b"[]", json.dumps(future).encode()]:
            await redis.publish(bus.channel("messages"), junk)
        good = an_event(position=1)
        await bus.publish(good, "messages")
        assert await inbox.next() == good
    skipped = [r for r in caplog.records if r.getMessage() == "skipped an invalid event"]
    assert len(skipped) == 4
    assert any("version" in record.reason for record in skipped)  # type: ignore[attr-defined]


async def test_a_failing_handler_does_not_stop_the_subscriber(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()

    async def handler(event: Event) -> None:
        if event.data.get("explode"):
            raise RuntimeError("handler bug")
        await inbox(event)

    async with running(bus.subscribe(handler, topics=["messages"])):
        await bus.publish(an_event(data={"explode": True}), "messages")
        second = an_event(position=2)
        await bus.publish(second, "messages")
        assert await inbox.next() == second
    failures = [r for r in caplog.records if r.getMessage() == "event handler failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None


async def test_stop_is_quick_and_unsubscribes(bus: EventBus, redis: Redis) -> None:
    channel = bus.channel("messages")

    async def subscribers() -> int:
        [(_, count)] = await redis.pubsub_numsub(channel)
        return int(count)

    subscriber = bus.subscribe(Inbox(), topics=["messages"])
    subscriber.start()
    await wait_until(lambda: subscriber.connected)
    assert await subscribers() == 1
    began = time.monotonic()
    await subscriber.stop()
    assert time.monotonic() - began < 1.0
    assert not subscriber.connected
    # The server notices the closed connection on its next pass; allow it a moment.
    for _ in range(50):
        if await subscribers() == 0:
            break
        await asyncio.sleep(0.02)
    assert await subscribers() == 0


# --- Redis going away -----------------------------------------------------------------------


@pytest.fixture
async def restartable(redis_server: EmbeddedRedis) -> AsyncIterator[EmbeddedRedis]:
    """The module's server, for a test that stops it; running again afterwards whatever happens."""
    yield redis_server
    if not redis_server.running:
        await asyncio.to_thread(redis_server.start)


async def test_subscriber_resubscribes_after_redis_restarts(
    bus: EventBus, restartable: EmbeddedRedis
) -> None:
    inbox = Inbox()
    reconnects = 0

    async def on_reconnect() -> None:
        nonlocal reconnects
        reconnects += 1

    subscriber = bus.subscribe(inbox, topics=["messages"], on_reconnect=on_reconnect)
    async with running(subscriber):
        before = an_event(position=1)
        await bus.publish(before, "messages")
        assert await inbox.next() == before

        await asyncio.to_thread(restartable.stop)
        await wait_until(lambda: not subscriber.connected)
        with pytest.raises(RedisConnectionError):
            await bus.publish(an_event(position=2), "messages")

        began = time.monotonic()
        await asyncio.to_thread(restartable.start)
        await wait_until(lambda: reconnects == 1, within=10.0)
        assert time.monotonic() - began < 10.0
        after = an_event(position=3)
        assert await bus.publish(after, "messages") == 1
        assert await inbox.next() == after
        assert inbox.queue.empty()


async def test_subscriber_backs_off_while_redis_is_unreachable_and_stops_quickly(
    bus: EventBus, restartable: EmbeddedRedis
) -> None:
    subscriber = bus.subscribe(Inbox(), topics=["messages"])
    subscriber.start()
    await wait_until(lambda: subscriber.connected)
    await asyncio.to_thread(restartable.stop)
    await wait_until(lambda: not subscriber.connected)

    # Stand in for a Redis that accepts connections and drops them at once: every attempt
    # gets as far as TCP, so this also checks that a TCP connect alone does not reset backoff.
    attempts = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()

    listener = await asyncio.start_server(drop, "127.0.0.1", restartable.port)
    try:
        cpu_before = time.process_time()
        await asyncio.sleep(1.0)
        cpu_seconds = time.process_time() - cpu_before
        # Backoff doubles from 0.05 s, so a second holds a handful of attempts, not thousands.
        assert 1 <= attempts <= 10
        assert cpu_seconds < 0.25
        assert not subscriber.connected

        began = time.monotonic()
        await subscriber.stop()
        assert time.monotonic() - began < 1.0
    finally:
        listener.close()
        await listener.wait_closed()


async def test_subscriber_pings_a_quiet_connection_and_drops_a_silent_one(
    bus: EventBus, restartable: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shortened from 15 s + 5 s so the test takes seconds; the logic is the same.
    monkeypatch.setattr(events, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(events, "IDLE_PING_SECONDS", 0.2)
    monkeypatch.setattr(events, "PONG_TIMEOUT_SECONDS", 0.3)
    reconnects = 0

    async def on_reconnect() -> None:
        nonlocal reconnects
        reconnects += 1

    subscriber = bus.subscribe(Inbox(), topics=["messages"], on_reconnect=on_reconnect)
    async with running(subscriber):
        await asyncio.sleep(1.0)  # several idle periods, each answered by a PONG
        assert subscriber.connected
        assert reconnects == 0

        # A frozen server keeps its TCP connections open but never answers, like a network
        # partition; only the heartbeat can notice.
        assert restartable.process is not None
        restartable.process.send_signal(signal.SIGSTOP)
        try:
            await wait_until(lambda: not subscriber.connected, within=3.0)
        finally:
            restartable.process.send_signal(signal.SIGCONT)
        await wait_until(lambda: reconnects == 1 and subscriber.connected)
