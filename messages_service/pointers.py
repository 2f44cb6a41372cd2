"""Read and delivery pointers, receipts and unread counts.

**Unread counts** come from counters, never from scanning history: for a member with read pointer
``r`` in a conversation, with ``floor = max(r, purged_through_seq)``::

    unread = last_seq - floor - (tombstones with seq > floor)

A sender's read pointer moves to each message they send (store.py), so their own messages are
never above it; edits change nothing; a deleted message becomes a tombstone, found through a
partial index that holds deleted rows only; retention raises the floor (retention.py). Mentions
are rows of their own, removed with the message, so mention counts are the member's mentions
with ``seq > floor``.

Pointers move forward only (``GREATEST``), even when two moves race; reading implies delivery.
Only a move that changed something publishes ``receipt.updated``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from messages_service.counters import move_pointers, next_position
from messages_service.models import Audience, Pointers, UnreadCount
from messages_service.store import EVENT_TOPIC
from messages_service.tables import conversation_state, member_pointers, mentions, messages
from servicekit.db import Database
from servicekit.errors import ValidationFailed
from servicekit.events import Event
from servicekit.outbox import EventsToPublish, Outbox


class PointerStore:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self._database = database
        self._outbox = outbox

    async def move_pointer(
        self,
        conversation_id: uuid.UUID,
        user_id: str,
        seq: int,
        *,
        read: bool,
        audience: Audience,
        now: datetime,
    ) -> Pointers:
        """The member's pointers after moving the read (or delivery) pointer forward to ``seq``.

        ``seq`` beyond the conversation's newest message is a 422; a pointer never moves back,
        and only a pointer that moved publishes ``receipt.updated``.
        """

        async def work(connection: AsyncConnection) -> tuple[Pointers, EventsToPublish]:
            last_seq = (
                await connection.execute(
                    select(conversation_state.c.last_seq).where(
                        conversation_state.c.conversation_id == conversation_id
                    )
                )
            ).scalar_one_or_none() or 0
            if seq > last_seq:
                raise ValidationFailed(
                    "seq is beyond the newest message.",
                    errors=[{"field": "seq", "message": f"At most {last_seq}."}],
                    code="seq_out_of_range",
                )
            before = await _pointers(connection, conversation_id, user_id)
            current = before.read_seq if read else before.delivered_seq
            if seq <= current:
                return before, ()
            after = await move_pointers(connection, conversation_id, user_id, seq, read, now)
            position = await next_position(connection, conversation_id)
            event = Event(
                type="receipt.updated",
                data=after.to_json(),
                position=position,
                conversation_id=str(conversation_id),
                user_ids=audience.user_ids,
            )
            return after, [(EVENT_TOPIC, event)]

        return await self._outbox.transaction(work)

    async def get_pointers_of_members(
        self, conversation_id: uuid.UUID, user_ids: Sequence[str]
    ) -> list[Pointers]:
        """The pointers of those of ``user_ids`` who have any in the conversation."""

        async def work(connection: AsyncConnection) -> list[Pointers]:
            rows = await connection.execute(
                select(*member_pointers.c).where(
                    member_pointers.c.conversation_id == conversation_id,
                    member_pointers.c.user_id.in_(list(user_ids)),
                )
            )
            return [
                Pointers(row.conversation_id, row.user_id, row.read_seq, row.delivered_seq)
                for row in rows
            ]

        return await self._database.transaction(work)

    async def get_unread_counts(
        self, user_id: str, conversation_ids: Sequence[uuid.UUID]
    ) -> list[UnreadCount]:
        """Unread and mention counts of ``user_id`` in those of ``conversation_ids`` that have
        anything unread (module docstring: counters and indexes only, no history scan)."""
        if not conversation_ids:
            return []
        state, pointer = conversation_state, member_pointers
        floor = func.greatest(func.coalesce(pointer.c.read_seq, 0), state.c.purged_through_seq)
        tombstones = (
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.conversation_id == state.c.conversation_id,
                messages.c.seq > floor,
                messages.c.deleted_at.is_not(None),
            )
            .scalar_subquery()
        )
        mentioned = (
            select(func.count())
            .select_from(mentions)
            .where(
                mentions.c.user_id == user_id,
                mentions.c.conversation_id == state.c.conversation_id,
                mentions.c.seq > floor,
            )
            .scalar_subquery()
        )
        query = (
            select(
                state.c.conversation_id,
                state.c.last_seq,
                (state.c.last_seq - floor - tombstones).label("unread"),
                mentioned.label("mentions"),
            )
            .select_from(
                state.outerjoin(
                    pointer,
                    and_(
                        pointer.c.conversation_id == state.c.conversation_id,
                        pointer.c.user_id == user_id,
                    ),
                )
            )
            .where(state.c.conversation_id.in_(list(conversation_ids)))
            .order_by(state.c.conversation_id)
        )

        async def work(connection: AsyncConnection) -> list[UnreadCount]:
            rows = await connection.execute(query)
            return [
                UnreadCount(row.conversation_id, int(row.unread), int(row.mentions), row.last_seq)
                for row in rows
                if row.unread > 0 or row.mentions > 0
            ]

        return await self._database.transaction(work)


async def _pointers(
    connection: AsyncConnection, conversation_id: uuid.UUID, user_id: str
) -> Pointers:
    row = (
        await connection.execute(
            select(member_pointers.c.read_seq, member_pointers.c.delivered_seq).where(
                member_pointers.c.conversation_id == conversation_id,
                member_pointers.c.user_id == user_id,
            )
        )
    ).first()
    read_seq, delivered_seq = (0, 0) if row is None else (row[0], row[1])
    return Pointers(conversation_id, user_id, read_seq, delivered_seq)
