"""The per-conversation counters and per-member pointers that several transactions move.

Each function runs inside the caller's transaction (see store.py for why the counters are rows,
not sequences).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from messages_service.models import Pointers
from messages_service.tables import conversation_state, member_pointers


async def ensure_conversation_state(
    connection: AsyncConnection, conversation_id: uuid.UUID
) -> None:
    """Create the conversation's counter row on its first write (idempotent)."""
    await connection.execute(
        insert(conversation_state)
        .values(
            conversation_id=conversation_id,
            last_seq=0,
            last_position=0,
            purged_through_seq=0,
            activity_pending=False,
        )
        .on_conflict_do_nothing()
    )


async def next_position(connection: AsyncConnection, conversation_id: uuid.UUID) -> int:
    """The position of the conversation's next event (taken in this transaction)."""
    await ensure_conversation_state(connection, conversation_id)
    position: int = (
        await connection.execute(
            update(conversation_state)
            .where(conversation_state.c.conversation_id == conversation_id)
            .values(last_position=conversation_state.c.last_position + 1)
            .returning(conversation_state.c.last_position)
        )
    ).scalar_one()
    return position


async def move_pointers(
    connection: AsyncConnection,
    conversation_id: uuid.UUID,
    user_id: str,
    seq: int,
    read: bool,
    now: datetime,
) -> Pointers:
    """Move the delivery pointer, and the read pointer when ``read``, forward to ``seq``
    (reading a message implies it was delivered). Never backwards, even when racing."""
    values = insert(member_pointers).values(
        conversation_id=conversation_id,
        user_id=user_id,
        read_seq=seq if read else 0,
        delivered_seq=seq,
        updated_at=now,
    )
    excluded = values.excluded
    statement = values.on_conflict_do_update(
        index_elements=[member_pointers.c.conversation_id, member_pointers.c.user_id],
        set_={
            "read_seq": func.greatest(member_pointers.c.read_seq, excluded.read_seq),
            "delivered_seq": func.greatest(member_pointers.c.delivered_seq, excluded.delivered_seq),
            "updated_at": excluded.updated_at,
        },
    ).returning(member_pointers.c.read_seq, member_pointers.c.delivered_seq)
    row = (await connection.execute(statement)).one()
    return Pointers(conversation_id, user_id, row[0], row[1])
