"""The transactional outbox against real PostgreSQL and a redis-server that is stopped mid-test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from sqlalchemy import MetaData, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.embedded import EmbeddedRedis, free_port
from servicekit import outbox as outbox_module
from servicekit.db import Database
from servicekit.events import Event, EventBus
from servicekit.outbox import EventsToPublish, Outbox, outbox_table, outbox_table_ddl, uuid7_floor
from tests.servicekit.test_events import Inbox, running, wait_until


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(
        redis_server.url, retry=Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2)
    )
    yield client
    await client.aclose()
    if not redis_server.running:
        await asyncio.to_thread(redis_server.start)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.close()


@pytest.fixture
async def outbox(database: Database, redis: Redis) -> AsyncIterator[Outbox]:
    """An outbox in a schema of its own, on a bus in a namespace of its own."""
    schema = f"outbox_test_{uuid.uuid4().hex[:10]}"
    async with database.engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await connection.execute(text(outbox_table_ddl(schema, yugabyte=False)))
    box = Outbox(
        database,
        EventBus(redis, namespace=f"test-{uuid.uuid4().hex[:12]}"),
        outbox_table(MetaData(schema=schema)),
    )
    yield box
    await box.close()
    async with database.engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


async def pending_rows(box: Outbox) -> int:
    async with box.database.engine.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(box.table))).scalar()
    return int(count or 0)


def message_event(position: int) -> Event:
    return Event(
        type="message.created", data={"seq": position}, position=position, conversation_id="c"
    )


def work_publishing(*events: Event) -> object:
    async def work(connection: AsyncConnection) -> tuple[str, EventsToPublish]:
        await connection.execute(text("SELECT 1"))
        return "done", [("messages", event) for event in events]

    return work


async def test_events_are_published_after_commit_and_their_rows_removed(outbox: Outbox) -> None:
    inbox = Inbox()
    async with running(outbox.bus.subscribe(inbox, topics=["messages"])):
        events = [message_event(1), message_event(2)]
        assert await outbox.transaction(work_publishing(*events)) == "done"  # type: ignore[arg-type]
        assert [await inbox.next(), await inbox.next()] == events
    assert await pending_rows(outbox) == 0


async def test_a_failed_unit_of_work_publishes_nothing_and_leaves_no_rows(outbox: Outbox) -> None:
    inbox = Inbox()

    async def failing(connection: AsyncConnection) -> tuple[None, EventsToPublish]:
        raise RuntimeError("the change is refused")

    async with running(outbox.bus.subscribe(inbox, topics=["messages"])):
        with pytest.raises(RuntimeError):
            await outbox.transaction(failing)
        await asyncio.sleep(0.1)
    assert inbox.queue.empty()
    assert await pending_rows(outbox) == 0


async def test_events_written_while_redis_is_down_are_published_in_order_once_it_returns(
    outbox: Outbox, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "RELAY_INTERVAL_SECONDS", 0.05)
    inbox = Inbox()
    async with running(outbox.bus.subscribe(inbox, topics=["messages"])) as subscriber:
        await asyncio.to_thread(redis_server.stop)
        await wait_until(lambda: not subscriber.connected)
        began = time.monotonic()
        events = [message_event(position) for position in range(1, 11)]
        for event in events:  # every unit of work commits although nothing can be published
            assert await outbox.transaction(work_publishing(event)) == "done"  # type: ignore[arg-type]
        # Only the first commit waits for Redis; after it the fast path is skipped.
        assert time.monotonic() - began < 5.0
        assert await outbox.relay_once() == 0  # a relay pass while Redis is down publishes nothing
        assert await pending_rows(outbox) == len(events)

        await asyncio.to_thread(redis_server.start)
        # The relay starts once the subscriber is back: pub/sub reaches only those listening.
        await wait_until(lambda: subscriber.connected, within=10.0)
        outbox.start()
        received = [await inbox.next() for _ in events]
    assert [event.position for event in received] == list(range(1, 11))
    assert await pending_rows(outbox) == 0


async def test_the_relay_leaves_fresh_rows_to_their_fast_path(outbox: Outbox) -> None:
    async def stage_only(connection: AsyncConnection) -> None:
        await outbox._stage(connection, [("messages", message_event(1))])

    await outbox.database.transaction(stage_only)
    assert await outbox.relay_once() == 0
    assert await outbox.relay_once(include_recent=True) == 1
    assert await pending_rows(outbox) == 0


async def test_concurrent_relays_publish_each_left_over_event_once(
    outbox: Outbox, database_url: str
) -> None:
    events = [message_event(position) for position in range(1, 61)]

    async def stage_only(connection: AsyncConnection) -> None:
        await outbox._stage(connection, [("messages", event) for event in events])

    await outbox.database.transaction(stage_only)
    second_database = Database(database_url)
    second = Outbox(second_database, outbox.bus, outbox.table)
    inbox = Inbox()
    try:
        async with running(outbox.bus.subscribe(inbox, topics=["messages"])):
            counts = await asyncio.gather(
                outbox.relay_once(include_recent=True), second.relay_once(include_recent=True)
            )
            while sum(counts) < len(events):
                counts.append(await outbox.relay_once(include_recent=True))
            received = [await inbox.next() for _ in events]
            await asyncio.sleep(0.1)
            assert inbox.queue.empty()
    finally:
        await second_database.close()
    assert sorted(event.id for event in received) == sorted(event.id for event in events)


def test_uuid7_floor_orders_ids_by_their_millisecond() -> None:
    moment = time.time()
    floor = uuid7_floor(moment)
    assert floor.version == 7
    assert uuid7_floor(moment - 1) < floor < uuid7_floor(moment + 0.002)
