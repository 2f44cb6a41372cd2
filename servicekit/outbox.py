"""Events that are never lost: a transactional outbox in front of the event bus.

A unit of work that changes state also writes the events describing the change into its
service's ``outbox`` table, in the same transaction, so an event exists exactly when its change
committed. Then:

- the fast path: right after the commit the service publishes those events and deletes their
  rows — one Redis round trip and one small delete, so live delivery stays immediate;
- the relay: a background task in every instance publishes rows the fast path left behind
  (Redis was down, or the process died between commit and publish), oldest first, claiming them
  with ``FOR UPDATE SKIP LOCKED`` so that instances share the work instead of repeating it.

An outbox rather than retrying in memory because a process can die holding its retry queue, and
the database row is already part of the transaction that must succeed anyway. Delivery is at
least once (a crash between publish and delete publishes again); every event carries a unique
``id`` and a ``position``, so consumers can drop what they have already seen.

While Redis is failing, the fast path is skipped (the relay keeps trying every
``RELAY_INTERVAL_SECONDS``), so a Redis outage does not add a connect timeout to every request.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from redis.exceptions import RedisError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, Uuid, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.background import PeriodicTask
from servicekit.db import Database
from servicekit.events import Event, EventBus, InvalidEvent
from servicekit.migrations import quote_identifier

T = TypeVar("T")

RELAY_INTERVAL_SECONDS: Final = 0.5  # how soon an event left behind is published again
# Rows younger than this belong to a fast path that may still be publishing them.
RELAY_GRACE_SECONDS: Final = 2.0
RELAY_BATCH_SIZE: Final = 200  # rows claimed per relay transaction

logger = logging.getLogger("servicekit.outbox")

EventsToPublish = Sequence[tuple[str, Event]]
"""``(topic, event)`` pairs a unit of work wants published once it has committed."""
UnitOfWorkWithEvents = Callable[[AsyncConnection], Awaitable[tuple[T, EventsToPublish]]]


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in ``metadata``'s schema (created by ``outbox_table_ddl``)."""
    return Table(
        "outbox",
        metadata,
        Column("id", Uuid, primary_key=True),  # the event's UUIDv7 id: creation order
        Column("topic", Text, nullable=False),
        Column("event", Text, nullable=False),  # the envelope's JSON, exactly as published
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


def outbox_table_ddl(schema: str, *, yugabyte: bool) -> str:
    """``CREATE TABLE`` for a schema's outbox.

    On YugabyteDB the key is range-ordered (``ASC``) so the relay reads the oldest rows first;
    it would otherwise hash-shard a single-column key. PostgreSQL's B-tree key is ordered anyway
    (and it cannot parse ``ASC`` in a table constraint).
    """
    key = "PRIMARY KEY (id ASC)" if yugabyte else "PRIMARY KEY (id)"
    return f"""
    CREATE TABLE IF NOT EXISTS {quote_identifier(schema)}.outbox (
        id uuid NOT NULL,
        topic text NOT NULL,
        event text NOT NULL,
        created_at timestamptz NOT NULL,
        {key}
    )
    """


def uuid7_floor(moment: float) -> uuid.UUID:
    """The smallest UUIDv7 of the millisecond ``moment`` (Unix seconds): ids below it are older."""
    milliseconds = int(moment * 1000)
    return uuid.UUID(int=(milliseconds << 80) | (0x7 << 76) | (0b10 << 62))


@dataclass(frozen=True)
class _StagedEvent:
    id: uuid.UUID
    topic: str
    payload: str


class Outbox:
    """Publishes a service's events after commit, and later again if that fails."""

    def __init__(
        self,
        database: Database,
        bus: EventBus,
        table: Table,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.bus = bus
        self.table = table
        self._clock = clock
        self._bus_failing = False
        self._relay: PeriodicTask | None = None

    async def transaction(self, work: UnitOfWorkWithEvents[T]) -> T:
        """Run ``work`` in one retrying transaction together with writing its events; once it
        has committed, publish them. Returns ``work``'s result."""

        async def unit(connection: AsyncConnection) -> tuple[T, list[_StagedEvent]]:
            result, events = await work(connection)
            return result, await self._stage(connection, events)

        result, staged = await self.database.transaction(unit)
        if staged and not self._bus_failing:
            await self._publish_and_forget(staged)
        return result

    async def _stage(
        self, connection: AsyncConnection, events: EventsToPublish
    ) -> list[_StagedEvent]:
        staged = [
            _StagedEvent(uuid.UUID(event.id), topic, event.to_json()) for topic, event in events
        ]
        if staged:
            now = datetime.now(UTC)
            await connection.execute(
                insert(self.table),
                [
                    {"id": item.id, "topic": item.topic, "event": item.payload, "created_at": now}
                    for item in staged
                ],
            )
        return staged

    async def _publish(self, staged: Sequence[_StagedEvent]) -> list[uuid.UUID]:
        """Publish in order until one fails; the ids of those published."""
        published: list[uuid.UUID] = []
        if not staged:  # nothing was tried, so nothing was learnt about the bus
            return published
        for item in staged:
            try:
                await self.bus.redis.publish(self.bus.channel(item.topic), item.payload)
            except (RedisError, OSError) as error:
                if not self._bus_failing:
                    logger.warning(
                        "publishing events failed; the relay will retry",
                        extra={"error": repr(error)},
                    )
                self._bus_failing = True
                break
            published.append(item.id)
        else:
            self._bus_failing = False
        return published

    async def _publish_and_forget(self, staged: Sequence[_StagedEvent]) -> None:
        published = await self._publish(staged)
        if not published:
            return
        try:
            await self.database.transaction(
                lambda connection: connection.execute(
                    delete(self.table).where(self.table.c.id.in_(published))
                )
            )
        except Exception:  # the relay publishes them again: at least once, never lost
            logger.exception("could not delete published outbox rows")

    async def relay_once(self, *, include_recent: bool = False) -> int:
        """Publish the oldest rows left behind; returns how many were published.

        Rows younger than ``RELAY_GRACE_SECONDS`` are left to their fast path unless
        ``include_recent`` (or the bus is failing, so no fast path is running).
        """
        query = select(self.table.c.id, self.table.c.topic, self.table.c.event)
        if not (include_recent or self._bus_failing):
            query = query.where(self.table.c.id < uuid7_floor(self._clock() - RELAY_GRACE_SECONDS))
        query = query.order_by(self.table.c.id).limit(RELAY_BATCH_SIZE)
        query = query.with_for_update(skip_locked=True)

        async def relay(connection: AsyncConnection) -> int:
            rows = (await connection.execute(query)).all()
            staged = []
            for row in rows:
                try:
                    Event.from_json(row.event)
                except InvalidEvent:  # cannot happen for rows written by _stage; never loop on one
                    logger.error("dropping an invalid outbox row", extra={"event_id": str(row.id)})
                    await connection.execute(delete(self.table).where(self.table.c.id == row.id))
                    continue
                staged.append(_StagedEvent(row.id, row.topic, row.event))
            published = await self._publish(staged)
            if published:
                await connection.execute(delete(self.table).where(self.table.c.id.in_(published)))
            return len(published)

        return await self.database.transaction(relay)

    async def _relay_all(self) -> None:
        """One round of the relay: publish what is left, then see whether the bus is back."""
        relayed = await self.relay_once()
        while relayed == RELAY_BATCH_SIZE:
            relayed = await self.relay_once()
        if self._bus_failing and relayed == 0:
            await self._check_bus()

    async def _check_bus(self) -> None:
        """With nothing to relay, learn from a PING whether the fast path may resume."""
        try:
            await self.bus.redis.ping()
        except (RedisError, OSError):
            return
        self._bus_failing = False

    def start(self) -> None:
        """Start the relay on the running event loop."""
        if self._relay is None:
            self._relay = PeriodicTask(
                f"outbox relay {self.table.fullname}", self._relay_all, RELAY_INTERVAL_SECONDS
            )
        self._relay.start()

    async def close(self) -> None:
        """Stop the relay (rows it did not publish stay for the next start)."""
        if self._relay is not None:
            await self._relay.close()
