"""Messages and reactions in the database.

Each public method is one transaction and is named after what it returns. Methods that change
what clients see run through the outbox (``Outbox.transaction``): their events are written in the
same transaction and published after commit (servicekit/outbox.py).

**seq.** Every message takes ``conversation_state.last_seq + 1`` by an ``UPDATE … RETURNING`` in
the transaction that inserts it. The row lock (PostgreSQL) or the write conflict (snapshot
isolation, YugabyteDB) lets one sender at a time through; a transaction that loses or is rolled
back takes its increment with it, so seqs are gap-free and in commit order. Never a sequence
(gaps on rollback) or a clock (ties, skew).

**created_at** is ``GREATEST(last_message_at, now)`` from the same row, so it never decreases
along seq. Retention deletes by age; because age follows seq, what it deletes from a conversation
is always a prefix 1..purged_through_seq.

**Idempotent sends.** ``(conversation_id, sender_id, client_msg_id)`` is unique. A send first
looks for that key and returns the original when it exists; two racing identical sends collide
on the unique index, and the loser (``DuplicateSend``) is run again and finds the winner's row.
A transaction retried after a lost commit (40001) finds its own earlier row the same way.

**Positions.** Each event about a conversation takes ``conversation_state.last_position + 1``,
in the same transaction as the change, so a client that sees positions 7 then 9 knows it missed
one and reloads.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

import uuid6
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from messages_service import search
from messages_service.counters import ensure_conversation_state, move_pointers, next_position
from messages_service.models import (
    Audience,
    Message,
    NewMessage,
    Reaction,
    SendResult,
    message_not_found,
)
from messages_service.tables import conversation_state, mentions, messages, reactions
from servicekit.db import Database
from servicekit.errors import Conflict, Forbidden, ValidationFailed
from servicekit.events import Event
from servicekit.outbox import EventsToPublish, Outbox

EVENT_TOPIC: Final = "messages"
REACTION_USERS_SHOWN: Final = 20  # user ids listed per emoji; the count covers everyone


class DuplicateSend(Exception):
    """Another transaction stored the same (conversation, sender, client_msg_id) first."""


class MessageStore:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self._database = database
        self._outbox = outbox

    # Sending and reading history -------------------------------------------------------------

    async def send_message(self, new: NewMessage, audience: Audience, now: datetime) -> SendResult:
        """The stored message: a new one, or the original for a repeated ``client_msg_id``."""

        async def work(connection: AsyncConnection) -> tuple[SendResult, EventsToPublish]:
            existing = await _message_where(
                connection,
                and_(
                    messages.c.conversation_id == new.conversation_id,
                    messages.c.sender_id == new.sender_id,
                    messages.c.client_msg_id == new.client_msg_id,
                ),
            )
            if existing is not None:
                return SendResult(existing, created=False), ()
            if new.reply_to is not None:
                replied = await connection.execute(
                    select(messages.c.seq).where(
                        messages.c.id == new.reply_to,
                        messages.c.conversation_id == new.conversation_id,
                    )
                )
                if replied.first() is None:
                    raise ValidationFailed(
                        "reply_to must be a message of this conversation.",
                        errors=[{"field": "reply_to", "message": "No such message here."}],
                        code="reply_to_not_found",
                    )
            await ensure_conversation_state(connection, new.conversation_id)
            counters = (
                await connection.execute(
                    update(conversation_state)
                    .where(conversation_state.c.conversation_id == new.conversation_id)
                    .values(
                        last_seq=conversation_state.c.last_seq + 1,
                        last_position=conversation_state.c.last_position + 1,
                        last_message_at=func.greatest(
                            func.coalesce(conversation_state.c.last_message_at, now), now
                        ),
                        activity_pending=True,
                    )
                    .returning(
                        conversation_state.c.last_seq,
                        conversation_state.c.last_position,
                        conversation_state.c.last_message_at,
                    )
                )
            ).one()
            message = Message(
                id=uuid6.uuid7(),
                conversation_id=new.conversation_id,
                seq=counters.last_seq,
                sender_id=new.sender_id,
                client_msg_id=new.client_msg_id,
                body=new.body,
                reply_to=new.reply_to,
                created_at=counters.last_message_at,
                edited_at=None,
                deleted_at=None,
                mentions=new.mentions,
            )
            try:
                await connection.execute(
                    messages.insert().values(
                        conversation_id=message.conversation_id,
                        seq=message.seq,
                        id=message.id,
                        sender_id=message.sender_id,
                        client_msg_id=message.client_msg_id,
                        body=message.body,
                        reply_to=message.reply_to,
                        created_at=message.created_at,
                    )
                )
            except IntegrityError as error:
                raise DuplicateSend from error
            await _insert_mentions(connection, message.conversation_id, message.seq, new.mentions)
            await move_pointers(
                connection, message.conversation_id, new.sender_id, message.seq, read=True, now=now
            )
            await search.index_message(
                connection,
                conversation_id=message.conversation_id,
                seq=message.seq,
                message_id=message.id,
                body=new.body,
                created_at=message.created_at,
            )
            event = _event(
                "message.created", message.to_json(), counters.last_position, message, audience
            )
            return SendResult(message, created=True), [event]

        try:
            return await self._outbox.transaction(work)
        except DuplicateSend:
            # The racing send has committed: this run finds it and returns it.
            return await self._outbox.transaction(work)

    async def get_message(self, message_id: uuid.UUID) -> Message | None:
        """The message with ``message_id``, tombstone or not, with mentions and reactions."""
        return await self._database.transaction(
            lambda connection: _message_where(connection, messages.c.id == message_id)
        )

    async def get_messages(
        self,
        conversation_id: uuid.UUID,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
    ) -> list[Message]:
        """Messages below ``before`` newest first, or above ``after`` oldest first."""
        query = select(*messages.c).where(messages.c.conversation_id == conversation_id)
        if after is not None:
            query = query.where(messages.c.seq > after).order_by(messages.c.seq.asc())
        else:
            if before is not None:
                query = query.where(messages.c.seq < before)
            query = query.order_by(messages.c.seq.desc())

        async def work(connection: AsyncConnection) -> list[Message]:
            rows = (await connection.execute(query.limit(limit))).all()
            return await _with_details(connection, [_message(row._mapping) for row in rows])

        return await self._database.transaction(work)

    # Changing messages -----------------------------------------------------------------------

    async def edit_message(
        self,
        message_id: uuid.UUID,
        editor_id: str,
        body: str,
        new_mentions: tuple[str, ...],
        audience: Audience,
        now: datetime,
    ) -> Message:
        """The edited message; unchanged (and no event) when the body is the same."""

        async def work(connection: AsyncConnection) -> tuple[Message, EventsToPublish]:
            current = await _message_for_change(connection, message_id, author_id=editor_id)
            if current.body == body:
                return current, ()
            await connection.execute(
                update(messages).where(_message_key(current)).values(body=body, edited_at=now)
            )
            await connection.execute(delete(mentions).where(_mentions_of(current)))
            await _insert_mentions(connection, current.conversation_id, current.seq, new_mentions)
            await search.reindex_message(
                connection, conversation_id=current.conversation_id, seq=current.seq, body=body
            )
            edited = replace(current, body=body, edited_at=now, mentions=new_mentions)
            position = await next_position(connection, current.conversation_id)
            return edited, [_event("message.updated", edited.to_json(), position, edited, audience)]

        return await self._outbox.transaction(work)

    async def delete_message(
        self, message_id: uuid.UUID, author_id: str, audience: Audience, now: datetime
    ) -> Message:
        """The tombstone; deleting a tombstone again changes nothing and publishes nothing."""

        async def work(connection: AsyncConnection) -> tuple[Message, EventsToPublish]:
            current = await _message_for_change(
                connection, message_id, author_id=author_id, allow_deleted=True
            )
            if current.deleted_at is not None:
                return current, ()
            await connection.execute(
                update(messages).where(_message_key(current)).values(body=None, deleted_at=now)
            )
            await connection.execute(delete(mentions).where(_mentions_of(current)))
            await connection.execute(
                delete(reactions).where(
                    reactions.c.conversation_id == current.conversation_id,
                    reactions.c.seq == current.seq,
                )
            )
            await search.unindex_messages(
                connection, conversation_id=current.conversation_id, seqs=[current.seq]
            )
            tombstone = replace(current, body=None, deleted_at=now, mentions=(), reactions=())
            position = await next_position(connection, current.conversation_id)
            event = _event("message.deleted", tombstone.to_json(), position, tombstone, audience)
            return tombstone, [event]

        return await self._outbox.transaction(work)

    async def set_reaction(
        self,
        message_id: uuid.UUID,
        user_id: str,
        emoji: str,
        *,
        present: bool,
        audience: Audience,
        now: datetime,
    ) -> Message:
        """The message after adding (``present``) or removing ``user_id``'s ``emoji``."""

        async def work(connection: AsyncConnection) -> tuple[Message, EventsToPublish]:
            current = await _message_for_change(connection, message_id, author_id=None)
            key = (
                reactions.c.conversation_id == current.conversation_id,
                reactions.c.seq == current.seq,
                reactions.c.emoji == emoji,
                reactions.c.user_id == user_id,
            )
            if present:
                statement: Any = (
                    insert(reactions)
                    .values(
                        conversation_id=current.conversation_id,
                        seq=current.seq,
                        emoji=emoji,
                        user_id=user_id,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(reactions.c.user_id)
                )
            else:
                statement = delete(reactions).where(*key).returning(reactions.c.user_id)
            changed = (await connection.execute(statement)).first() is not None
            updated = (await _with_details(connection, [current]))[0]
            if not changed:
                return updated, ()
            summary = next((r for r in updated.reactions if r.emoji == emoji), None)
            position = await next_position(connection, current.conversation_id)
            data = {
                "message_id": str(current.id),
                "conversation_id": str(current.conversation_id),
                "seq": current.seq,
                "emoji": emoji,
                "user_id": user_id,
                "action": "added" if present else "removed",
                "count": 0 if summary is None else summary.count,
            }
            return updated, [_event("reaction.changed", data, position, current, audience)]

        return await self._outbox.transaction(work)


# Helpers, each within the caller's transaction ---------------------------------------------


def _message(values: Any) -> Message:
    return Message(
        id=values["id"],
        conversation_id=values["conversation_id"],
        seq=values["seq"],
        sender_id=values["sender_id"],
        client_msg_id=values["client_msg_id"],
        body=values["body"],
        reply_to=values["reply_to"],
        created_at=values["created_at"],
        edited_at=values["edited_at"],
        deleted_at=values["deleted_at"],
    )


def _message_key(message: Message) -> Any:
    return and_(
        messages.c.conversation_id == message.conversation_id, messages.c.seq == message.seq
    )


def _mentions_of(message: Message) -> Any:
    return and_(
        mentions.c.conversation_id == message.conversation_id, mentions.c.seq == message.seq
    )


def _event(
    event_type: str, data: dict[str, Any], position: int, message: Message, audience: Audience
) -> tuple[str, Event]:
    """A ``(topic, event)`` about ``message``'s conversation, for ``audience``."""
    return EVENT_TOPIC, Event(
        type=event_type,
        data=data,
        position=position,
        conversation_id=str(message.conversation_id),
        user_ids=audience.user_ids,
    )


async def _message_where(connection: AsyncConnection, condition: Any) -> Message | None:
    row = (await connection.execute(select(*messages.c).where(condition))).first()
    if row is None:
        return None
    return (await _with_details(connection, [_message(row._mapping)]))[0]


async def _message_for_change(
    connection: AsyncConnection,
    message_id: uuid.UUID,
    *,
    author_id: str | None,
    allow_deleted: bool = False,
) -> Message:
    """The message about to change, locked; enforces authorship (when ``author_id``) and that
    a tombstone is not changed (unless ``allow_deleted``)."""
    row = (
        await connection.execute(
            select(*messages.c).where(messages.c.id == message_id).with_for_update()
        )
    ).first()
    if row is None:  # purged by retention since the caller's membership check
        raise message_not_found()
    message = _message(row._mapping)
    if author_id is not None and message.sender_id != author_id:
        raise Forbidden("Only the author may change a message.", code="not_author")
    if message.deleted_at is not None and not allow_deleted:
        raise Conflict("The message has been deleted.", code="message_deleted")
    return (await _with_details(connection, [message]))[0]


async def _with_details(connection: AsyncConnection, page: list[Message]) -> list[Message]:
    """``page`` with each message's mentions and reactions (two queries for the whole page)."""
    if not page:
        return page
    conversation_id = page[0].conversation_id
    assert all(message.conversation_id == conversation_id for message in page)
    seqs = [message.seq for message in page]
    mentioned: dict[int, list[str]] = defaultdict(list)
    for seq, user_id in await connection.execute(
        select(mentions.c.seq, mentions.c.user_id)
        .where(mentions.c.conversation_id == conversation_id, mentions.c.seq.in_(seqs))
        .order_by(mentions.c.seq, mentions.c.user_id)
    ):
        mentioned[seq].append(user_id)
    first_reacted = func.min(reactions.c.created_at)
    shown_users = func.array_agg(aggregate_order_by(reactions.c.user_id, reactions.c.created_at))
    reacted: dict[int, list[Reaction]] = defaultdict(list)
    for seq, emoji, count, user_ids, _first in await connection.execute(
        select(reactions.c.seq, reactions.c.emoji, func.count(), shown_users, first_reacted)
        .where(reactions.c.conversation_id == conversation_id, reactions.c.seq.in_(seqs))
        .group_by(reactions.c.seq, reactions.c.emoji)
        .order_by(reactions.c.seq, first_reacted, reactions.c.emoji)
    ):
        reacted[seq].append(Reaction(emoji, int(count), tuple(user_ids[:REACTION_USERS_SHOWN])))
    return [
        replace(
            message,
            mentions=tuple(mentioned.get(message.seq, ())),
            reactions=tuple(reacted.get(message.seq, ())),
        )
        for message in page
    ]


async def _insert_mentions(
    connection: AsyncConnection, conversation_id: uuid.UUID, seq: int, user_ids: Sequence[str]
) -> None:
    if user_ids:
        await connection.execute(
            mentions.insert(),
            [{"conversation_id": conversation_id, "seq": seq, "user_id": u} for u in user_ids],
        )
