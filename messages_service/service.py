"""The rules of messages_service, between the routes (HTTP) and the store (SQL).

Every operation first establishes who may see what: the caller must be a member of the
conversation, asked of conversations_service on every call (membership.py). Anyone else gets the
same 404 as for something that does not exist — ``conversation_not_found`` for conversation
routes, ``message_not_found`` for message routes — so a non-member learns nothing. Only then do
author rules apply (403 ``not_author``), and only then is anything written.

Machine clients act within their token's scopes: ``chat.read`` to read, ``chat.write`` to change.

Bodies are stored exactly as written — no HTML escaping, no trimming — because clients render the
Markdown safely; what cannot be stored or displayed (NUL, lone surrogates, control characters
other than tab and line breaks) is refused, as is a body that is blank or longer than
``MAX_BODY_LENGTH`` code points.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from messages_service.membership import ConversationMembers, Membership
from messages_service.models import (
    Audience,
    Message,
    NewMessage,
    Pointers,
    SendResult,
    UnreadCount,
    mentioned_user_ids,
    message_not_found,
)
from messages_service.pointers import PointerStore
from messages_service.store import MessageStore
from messages_service.throttle import SendThrottle
from servicekit.errors import Conflict, NotFound, ValidationFailed
from servicekit.requests import Fields, text_problem
from servicekit.tokens import Principal

READ_SCOPE: Final = "chat.read"
WRITE_SCOPE: Final = "chat.write"
MAX_BODY_LENGTH: Final = 4000  # code points; a long message, not a document
MAX_CLIENT_MSG_ID_LENGTH: Final = 64  # characters; room for a UUID or a ULID with a prefix
MAX_EMOJI_LENGTH: Final = 32  # code points; a ZWJ family emoji is 7-11, a ":custom_name:" more
# Receipts list every member; beyond this size "who has read it" is noise and costly to build.
MAX_RECEIPT_MEMBERS: Final = 100
MAX_SEQ: Final = 2**63 - 1  # PostgreSQL bigint
DEFAULT_PAGE_SIZE: Final = 50  # messages per history page
MAX_PAGE_SIZE: Final = 200


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SendRequest:
    body: str
    client_msg_id: str
    reply_to: uuid.UUID | None


def read_send_request(document: dict[str, Any]) -> SendRequest:
    """The fields of a send; 422 naming each bad one."""
    fields = Fields(document, allowed={"body", "client_msg_id", "reply_to"})
    body = read_body(fields)
    client_msg_id = fields.text(
        "client_msg_id",
        required=True,
        min_length=1,
        max_length=MAX_CLIENT_MSG_ID_LENGTH,
        strip=False,
    )
    if client_msg_id is not None and any(character.isspace() for character in client_msg_id):
        fields.add_error("client_msg_id", "Must not contain whitespace.")
    reply_to = fields.uuid("reply_to")
    fields.finish()
    assert body is not None
    assert client_msg_id is not None
    return SendRequest(body, client_msg_id, reply_to)


def read_edit_request(document: dict[str, Any]) -> str:
    """The new body of an edit; 422 when it is not a valid body."""
    fields = Fields(document, allowed={"body"})
    body = read_body(fields)
    fields.finish()
    assert body is not None
    return body


def read_body(fields: Fields) -> str | None:
    body = fields.text(
        "body",
        required=True,
        min_length=1,
        max_length=MAX_BODY_LENGTH,
        single_line=False,
        strip=False,
    )
    if body is not None and not body.strip():
        fields.add_error("body", "Must not be blank.")
        return None
    return body


def read_pointer_request(document: dict[str, Any]) -> int:
    fields = Fields(document, allowed={"seq"})
    seq = fields.integer("seq", required=True, minimum=0, maximum=MAX_SEQ)
    fields.finish()
    assert seq is not None
    return seq


def check_emoji(emoji: str) -> str:
    """``emoji`` from the path when it is a short single-line string without spaces; 422."""
    problem = text_problem(emoji, single_line=True)
    if problem is None and not 1 <= len(emoji) <= MAX_EMOJI_LENGTH:
        problem = f"Must be 1 to {MAX_EMOJI_LENGTH} characters."
    if problem is None and any(character.isspace() for character in emoji):
        problem = "Must not contain whitespace."
    if problem is not None:
        raise ValidationFailed(
            "The emoji is not valid.",
            errors=[{"field": "emoji", "message": problem}],
            code="invalid_emoji",
        )
    return emoji


@dataclass(frozen=True)
class Receipts:
    message: Message
    read_by: list[str]
    delivered_to: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": str(self.message.id),
            "conversation_id": str(self.message.conversation_id),
            "seq": self.message.seq,
            "read_by": self.read_by,
            "delivered_to": self.delivered_to,
        }


class MessagesService:
    def __init__(
        self,
        store: MessageStore,
        pointers: PointerStore,
        membership: Membership,
        throttle: SendThrottle,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.pointers = pointers
        self.membership = membership
        self.throttle = throttle
        self._clock = clock

    async def send(
        self, principal: Principal, conversation_id: uuid.UUID, request: SendRequest
    ) -> SendResult:
        principal.require_scope(WRITE_SCOPE)
        await self.throttle.count_send(principal.id)
        members = await self.membership.require_member(conversation_id, principal.id)
        new = NewMessage(
            conversation_id=conversation_id,
            sender_id=principal.id,
            client_msg_id=request.client_msg_id,
            body=request.body,
            reply_to=request.reply_to,
            mentions=mentioned_user_ids(request.body, members.user_ids, principal.id),
        )
        return await self.store.send_message(new, Audience(members.user_ids), self._clock())

    async def history(
        self,
        principal: Principal,
        conversation_id: uuid.UUID,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        principal.require_scope(READ_SCOPE)
        await self.membership.require_member(conversation_id, principal.id)
        return await self.store.get_messages(
            conversation_id, before=before, after=after, limit=limit
        )

    async def edit(self, principal: Principal, message_id: uuid.UUID, body: str) -> Message:
        principal.require_scope(WRITE_SCOPE)
        message, members = await self._visible_message(principal, message_id)
        return await self.store.edit_message(
            message_id,
            principal.id,
            body,
            mentioned_user_ids(body, members.user_ids, message.sender_id),
            Audience(members.user_ids),
            self._clock(),
        )

    async def delete(self, principal: Principal, message_id: uuid.UUID) -> Message:
        principal.require_scope(WRITE_SCOPE)
        _, members = await self._visible_message(principal, message_id)
        return await self.store.delete_message(
            message_id, principal.id, Audience(members.user_ids), self._clock()
        )

    async def react(
        self, principal: Principal, message_id: uuid.UUID, emoji: str, *, present: bool
    ) -> Message:
        principal.require_scope(WRITE_SCOPE)
        _, members = await self._visible_message(principal, message_id)
        return await self.store.set_reaction(
            message_id,
            principal.id,
            emoji,
            present=present,
            audience=Audience(members.user_ids),
            now=self._clock(),
        )

    async def move_pointer(
        self, principal: Principal, conversation_id: uuid.UUID, seq: int, *, read: bool
    ) -> Pointers:
        principal.require_scope(WRITE_SCOPE)
        members = await self.membership.require_member(conversation_id, principal.id)
        return await self.pointers.move_pointer(
            conversation_id,
            principal.id,
            seq,
            read=read,
            audience=Audience(members.user_ids),
            now=self._clock(),
        )

    async def receipts(self, principal: Principal, message_id: uuid.UUID) -> Receipts:
        principal.require_scope(READ_SCOPE)
        message, members = await self._visible_message(principal, message_id)
        if len(members.user_ids) > MAX_RECEIPT_MEMBERS:
            raise Conflict(
                f"Receipts are kept for conversations of up to {MAX_RECEIPT_MEMBERS} members.",
                code="conversation_too_large",
            )
        others = [user_id for user_id in members.user_ids if user_id != message.sender_id]
        pointers = await self.pointers.get_pointers_of_members(message.conversation_id, others)
        return Receipts(
            message,
            read_by=sorted(p.user_id for p in pointers if p.read_seq >= message.seq),
            delivered_to=sorted(
                p.user_id for p in pointers if max(p.delivered_seq, p.read_seq) >= message.seq
            ),
        )

    async def unread(self, principal: Principal) -> list[UnreadCount]:
        principal.require_scope(READ_SCOPE)
        conversation_ids = await self.membership.conversation_ids_of(principal.id)
        return await self.pointers.get_unread_counts(principal.id, conversation_ids)

    async def _visible_message(
        self, principal: Principal, message_id: uuid.UUID
    ) -> tuple[Message, ConversationMembers]:
        """The message and its conversation's members; 404 unless the caller is a member."""
        message = await self.store.get_message(message_id)
        if message is None:
            raise message_not_found()
        try:
            members = await self.membership.require_member(message.conversation_id, principal.id)
        except NotFound:
            raise message_not_found() from None
        return message, members
