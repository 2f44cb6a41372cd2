"""What messages_service stores and shows: messages, reactions, pointers and counts, as values.

Mentions are written ``@[<user id>]``: brackets, because ids (a provider's ``sub``,
``machine:<sub>``) may contain any non-space character, so a bare ``@id`` could not say where
the id ends. Only members are recorded, never the sender (their own messages are never unread).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from servicekit.errors import NotFound
from servicekit.timestamps import utc_timestamp

MENTION_PATTERN: Final = re.compile(r"@\[([^\]\s]{1,255})\]")


def message_not_found() -> NotFound:
    return NotFound("There is no such message.", code="message_not_found")


@dataclass(frozen=True)
class Reaction:
    emoji: str
    count: int
    user_ids: tuple[str, ...]


@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    sender_id: str
    client_msg_id: str
    body: str | None
    reply_to: uuid.UUID | None
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    mentions: tuple[str, ...] = ()
    reactions: tuple[Reaction, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The message as the API shows it."""
        return {
            "id": str(self.id),
            "conversation_id": str(self.conversation_id),
            "seq": self.seq,
            "sender": self.sender_id,
            "client_msg_id": self.client_msg_id,
            "body": self.body,
            "reply_to": None if self.reply_to is None else str(self.reply_to),
            "created_at": utc_timestamp(self.created_at),
            "edited_at": None if self.edited_at is None else utc_timestamp(self.edited_at),
            "deleted": self.deleted_at is not None,
            "mentions": list(self.mentions),
            "reactions": [
                {"emoji": r.emoji, "count": r.count, "user_ids": list(r.user_ids)}
                for r in self.reactions
            ],
        }


@dataclass(frozen=True)
class NewMessage:
    conversation_id: uuid.UUID
    sender_id: str
    client_msg_id: str
    body: str
    reply_to: uuid.UUID | None
    mentions: tuple[str, ...]


@dataclass(frozen=True)
class SendResult:
    message: Message
    created: bool  # False: the client_msg_id was seen before and this is the original


@dataclass(frozen=True)
class Pointers:
    """One member's read and delivery pointers in one conversation."""

    conversation_id: uuid.UUID
    user_id: str
    read_seq: int
    delivered_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": str(self.conversation_id),
            "user_id": self.user_id,
            "read_seq": self.read_seq,
            "delivered_seq": self.delivered_seq,
        }


@dataclass(frozen=True)
class UnreadCount:
    conversation_id: uuid.UUID
    unread: int
    mentions: int
    last_seq: int


@dataclass(frozen=True)
class Activity:
    """What conversations_service is told about a conversation's newest message."""

    conversation_id: uuid.UUID
    last_seq: int
    last_message_at: datetime


@dataclass(frozen=True)
class Audience:
    """Who an event is for: the conversation's members when the change was made."""

    user_ids: tuple[str, ...]


def mentioned_user_ids(body: str, members: Iterable[str], sender_id: str) -> tuple[str, ...]:
    """The members ``body`` mentions as ``@[user id]``, in order of first mention, not the
    sender (their own messages are never unread, so mentioning oneself counts for nothing)."""
    allowed = set(members) - {sender_id}
    found: dict[str, None] = {}
    for match in MENTION_PATTERN.finditer(body):
        if match.group(1) in allowed:
            found.setdefault(match.group(1), None)
    return tuple(found)
