"""Retention: messages older than ``RETENTION_DAYS`` are deleted, with all that hangs on them.

A periodic job in every instance (every ``RETENTION_INTERVAL_SECONDS``) and ``parley retention
run`` both call ``purge_expired_messages``. It works in batches of ``RETENTION_BATCH_SIZE``
messages, each its own short transaction that walks the ``messages_by_created_at`` index from
the oldest message: no table scan, and no lock held longer than one batch. A batch deletes the
messages with their mentions, reactions and search entries, and raises each conversation's
``purged_through_seq`` so unread counts stop counting them (store.py). Read and delivery
receipts are per-member pointers, not rows per message, so nothing of a purged message remains
in them.

created_at never decreases along seq (store.py), and batches are taken in (created_at,
conversation_id, seq) order, so what is deleted from a conversation is always a prefix of its
history and ``purged_through_seq`` is exact. Several instances running the job at once is
harmless: a message deleted by one is simply not returned by the other's ``DELETE … RETURNING``.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messages_service import search
from messages_service.service import utc_now
from messages_service.settings import MessagesSettings
from messages_service.tables import conversation_state, mentions, messages, reactions
from servicekit.background import PeriodicTask
from servicekit.db import Database

logger = logging.getLogger("messages_service.retention")

RETENTION_BATCH_SIZE: Final = 500  # messages per transaction: short locks, few round trips


def retention_cutoff(retention_days: int, now: datetime) -> datetime:
    """Messages created before this moment are expired."""
    return now - timedelta(days=retention_days)


async def purge_messages_created_before(
    database: Database, cutoff: datetime, batch_size: int
) -> int:
    """Delete up to ``batch_size`` of the oldest messages created before ``cutoff``, with
    their mentions, reactions and search entries; returns how many were deleted."""
    victims = (
        select(messages.c.conversation_id, messages.c.seq)
        .where(messages.c.created_at < cutoff)
        .order_by(messages.c.created_at, messages.c.conversation_id, messages.c.seq)
        .limit(batch_size)
    )

    async def work(connection: AsyncConnection) -> int:
        keys = [(row[0], row[1]) for row in await connection.execute(victims)]
        if not keys:
            return 0
        deleted = await connection.execute(
            delete(messages)
            .where(tuple_(messages.c.conversation_id, messages.c.seq).in_(keys))
            .returning(messages.c.conversation_id, messages.c.seq)
        )
        seqs_by_conversation: dict[uuid.UUID, list[int]] = defaultdict(list)
        for conversation_id, seq in deleted:
            seqs_by_conversation[conversation_id].append(seq)
        for conversation_id, seqs in seqs_by_conversation.items():
            for table in (mentions, reactions):
                await connection.execute(
                    delete(table).where(
                        table.c.conversation_id == conversation_id, table.c.seq.in_(seqs)
                    )
                )
            await search.unindex_messages(connection, conversation_id=conversation_id, seqs=seqs)
            await connection.execute(
                update(conversation_state)
                .where(conversation_state.c.conversation_id == conversation_id)
                .values(
                    purged_through_seq=func.greatest(
                        conversation_state.c.purged_through_seq, max(seqs)
                    )
                )
            )
        return sum(len(seqs) for seqs in seqs_by_conversation.values())

    return await database.transaction(work)


async def purge_expired_messages(
    database: Database,
    retention_days: int,
    *,
    now: datetime | None = None,
    batch_size: int = RETENTION_BATCH_SIZE,
) -> int:
    """Delete every message older than ``retention_days``, batch by batch; returns the count."""
    cutoff = retention_cutoff(retention_days, now or utc_now())
    total = 0
    while True:
        deleted = await purge_messages_created_before(database, cutoff, batch_size)
        total += deleted
        if deleted < batch_size:
            break
    if total:
        logger.info("retention deleted messages", extra={"deleted": total})
    return total


async def run_retention(settings: MessagesSettings) -> int:
    """One full retention pass with its own database connection (``parley retention run``)."""
    database = Database(settings.database_url, pool_size=1)
    try:
        return await purge_expired_messages(database, settings.retention_days)
    finally:
        await database.close()


class RetentionJob:
    """Runs ``purge_expired_messages`` at start-up and then every ``interval_seconds``."""

    def __init__(
        self,
        database: Database,
        retention_days: int,
        interval_seconds: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._database = database
        self._retention_days = retention_days
        self._clock = clock
        self._loop = PeriodicTask("message retention", self._purge, interval_seconds)

    async def _purge(self) -> None:
        await purge_expired_messages(self._database, self._retention_days, now=self._clock())

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()
