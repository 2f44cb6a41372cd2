"""The rules of conversations and membership (invitations are in ``invitations.py``).

Who may do what in a group:

    action                               owner   admin   member
    read it, list members, leave          yes     yes     yes (the last owner cannot leave)
    rename, describe, invite, add         yes     yes     no
    remove or change the role of a        yes     yes     no
      member or admin
    grant "owner"; remove, demote an      yes     no      no (the last owner cannot be demoted)
      owner; delete the group

A direct conversation has exactly its two people, both "member", and no title; nothing about it
can change (409 ``direct_conversation_immutable``). Anyone who is not a member gets 404
``conversation_not_found`` from every route, whatever they asked, checked before anything else.

Each change is one unit of work: lock the conversation row (``store.lock_live_conversation``),
check the rules against what is committed, write, advance the conversation's ``revision`` and
stage the change's event in the outbox, which publishes it after commit.

Activity: messages_service reports each conversation's newest message (``POST /internal/activity``)
and ``record_activity`` moves ``last_seq`` and ``last_activity_at`` forward only, on the
conversation and on every membership row, so a person's list is an index range scan (see
``tables.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import uuid6
from sqlalchemy.ext.asyncio import AsyncConnection

from conversations_service import store
from conversations_service.directory import Directory
from conversations_service.errors import (
    AlreadyMember,
    ConversationNotFound,
    DirectConversationImmutable,
    InsufficientRole,
    LastOwner,
    MemberLimitReached,
    MemberNotFound,
)
from conversations_service.store import ActivityReport, Conversation, Member
from conversations_service.views import conversation_view, member_view
from servicekit.db import Database
from servicekit.events import Event
from servicekit.outbox import EventsToPublish, Outbox

ROLES: Final = ("owner", "admin", "member")
MANAGERS: Final = frozenset({"owner", "admin"})
# People (and bots) per group, creator included: every listing carries the member ids, so this
# bounds a page of GET /api/conversations.
MAX_GROUP_MEMBERS: Final = 1000
EVENT_TOPIC: Final = "conversations"


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.UUID(str(uuid6.uuid7()))


def conversation_event(
    event_type: str,
    data: dict[str, Any],
    *,
    conversation_id: uuid.UUID,
    position: int,
    user_ids: Sequence[str],
) -> tuple[str, Event]:
    """A change of a conversation, for ``user_ids``, at the conversation's new revision."""
    return EVENT_TOPIC, Event(
        type=event_type,
        data=data,
        position=position,
        conversation_id=str(conversation_id),
        user_ids=tuple(sorted(set(user_ids))),
    )


async def require_membership(
    connection: AsyncConnection, conversation_id: uuid.UUID, user_id: str, *, lock: bool = False
) -> tuple[Conversation, Member]:
    """The live conversation and the caller's membership; ``ConversationNotFound`` otherwise."""
    conversation = await store.get_live_conversation(connection, conversation_id, lock=lock)
    if conversation is None:
        raise ConversationNotFound
    member = await store.get_member(connection, conversation_id, user_id)
    if member is None:
        raise ConversationNotFound
    return conversation, member


def require_group(conversation: Conversation) -> None:
    if conversation.kind != "group":
        raise DirectConversationImmutable


def require_manager(member: Member) -> None:
    if member.role not in MANAGERS:
        raise InsufficientRole("Only the group's owners and admins may do this.")


async def require_room(connection: AsyncConnection, conversation_id: uuid.UUID) -> None:
    if await store.count_members(connection, conversation_id) >= MAX_GROUP_MEMBERS:
        raise MemberLimitReached(f"A group has at most {MAX_GROUP_MEMBERS} members.")


class ConversationService:
    def __init__(self, database: Database, outbox: Outbox, directory: Directory) -> None:
        self._database = database
        self._outbox = outbox
        self.directory = directory

    async def check_membership(self, conversation_id: uuid.UUID, user_id: str) -> None:
        """``ConversationNotFound`` unless ``user_id`` is in the live conversation (a cheap check
        before slower work such as directory lookups; the unit of work checks again)."""
        await self._database.transaction(
            lambda connection: require_membership(connection, conversation_id, user_id)
        )

    # Conversations ---------------------------------------------------------------------------

    async def create_direct(self, creator_id: str, other_id: str) -> tuple[dict[str, Any], bool]:
        """The pair's direct conversation and whether this call created it."""
        await self.directory.require_known([other_id], field="member_ids")
        low, high = sorted((creator_id, other_id))
        conversation_id = new_id()

        async def work(connection: AsyncConnection) -> tuple[tuple[dict[str, Any], bool], Any]:
            claimed = await store.claim_direct_pair(connection, (low, high), conversation_id)
            if claimed != conversation_id:
                existing = await store.get_live_conversation(connection, claimed)
                assert existing is not None, "direct conversations are never deleted"
                everyone = await store.get_members(connection, claimed)
                return (conversation_view(existing, everyone, "member"), False), []
            now = utc_now()
            people = [Member(u, "member", creator_id, now) for u in (low, high)]
            return await self._insert_conversation(
                connection, conversation_id, "direct", creator_id, people, now
            )

        return await self._outbox.transaction(work)

    async def create_group(
        self, creator_id: str, title: str, description: str | None, member_ids: Sequence[str]
    ) -> dict[str, Any]:
        await self.directory.require_known(member_ids, field="member_ids")

        async def work(connection: AsyncConnection) -> tuple[tuple[dict[str, Any], bool], Any]:
            now = utc_now()
            people = [Member(creator_id, "owner", creator_id, now)] + [
                Member(user_id, "member", creator_id, now) for user_id in sorted(member_ids)
            ]
            return await self._insert_conversation(
                connection, new_id(), "group", creator_id, people, now, title, description
            )

        view, _ = await self._outbox.transaction(work)
        return view

    async def _insert_conversation(
        self,
        connection: AsyncConnection,
        conversation_id: uuid.UUID,
        kind: str,
        creator_id: str,
        people: list[Member],
        now: datetime,
        title: str | None = None,
        description: str | None = None,
    ) -> tuple[tuple[dict[str, Any], bool], EventsToPublish]:
        conversation = Conversation(
            id=conversation_id,
            kind=kind,
            title=title,
            description=description,
            created_by=creator_id,
            created_at=now,
            revision=1,
            last_seq=None,
            last_activity_at=now,
        )
        await store.insert_conversation(connection, conversation, people)
        people.sort(key=lambda member: member.user_id)
        event = conversation_event(
            "conversation.created",
            conversation_view(conversation, people),
            conversation_id=conversation.id,
            position=conversation.revision,
            user_ids=[member.user_id for member in people],
        )
        my_role = next(m.role for m in people if m.user_id == creator_id)
        return (conversation_view(conversation, people, my_role), True), [event]

    async def get_conversation(self, user_id: str, conversation_id: uuid.UUID) -> dict[str, Any]:
        async def work(connection: AsyncConnection) -> dict[str, Any]:
            conversation, me = await require_membership(connection, conversation_id, user_id)
            everyone = await store.get_members(connection, conversation_id)
            return conversation_view(conversation, everyone, me.role)

        return await self._database.transaction(work)

    async def list_conversations(
        self, user_id: str, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[datetime, uuid.UUID] | None]:
        """A page of the user's conversations, most recent activity first, and the position
        after which the next page starts (None on the last page)."""

        async def work(
            connection: AsyncConnection,
        ) -> tuple[list[dict[str, Any]], tuple[datetime, uuid.UUID] | None]:
            rows = await store.get_conversations_page(connection, user_id, after, limit + 1)
            page = rows[:limit]
            everyone = await store.get_members_of(connection, [c.id for c, _ in page])
            views = [conversation_view(c, everyone[c.id], role) for c, role in page]
            if len(rows) <= limit:
                return views, None
            last = page[-1][0]
            return views, (last.last_activity_at, last.id)

        return await self._database.transaction(work)

    async def update_conversation(
        self, user_id: str, conversation_id: uuid.UUID, changes: dict[str, str | None]
    ) -> dict[str, Any]:
        """Change the group's title and/or description (owners and admins)."""

        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], EventsToPublish]:
            conversation, me = await require_membership(
                connection, conversation_id, user_id, lock=True
            )
            require_group(conversation)
            require_manager(me)
            await store.update_details(connection, conversation_id, changes)
            revision = await store.advance_revision(connection, conversation_id)
            updated = await store.get_live_conversation(connection, conversation_id)
            assert updated is not None
            everyone = await store.get_members(connection, conversation_id)
            event = conversation_event(
                "conversation.updated",
                conversation_view(updated, everyone),
                conversation_id=conversation_id,
                position=revision,
                user_ids=[m.user_id for m in everyone],
            )
            return conversation_view(updated, everyone, me.role), [event]

        return await self._outbox.transaction(work)

    async def delete_conversation(self, user_id: str, conversation_id: uuid.UUID) -> None:
        """Delete the group (owners): it is gone for everyone, its invitations end."""

        async def work(connection: AsyncConnection) -> tuple[None, EventsToPublish]:
            conversation, me = await require_membership(
                connection, conversation_id, user_id, lock=True
            )
            require_group(conversation)
            if me.role != "owner":
                raise InsufficientRole("Only the group's owners may delete it.")
            everyone = await store.get_members(connection, conversation_id)
            now = utc_now()
            revision = await store.advance_revision(connection, conversation_id, deleted_at=now)
            await store.delete_members(connection, conversation_id)
            await store.revoke_pending_invitations(connection, conversation_id, now)
            event = conversation_event(
                "conversation.deleted",
                {"conversation_id": str(conversation_id), "deleted_by": user_id},
                conversation_id=conversation_id,
                position=revision,
                user_ids=[m.user_id for m in everyone],
            )
            return None, [event]

        await self._outbox.transaction(work)

    # Members ---------------------------------------------------------------------------------

    async def list_members(
        self, user_id: str, conversation_id: uuid.UUID, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of members by user id, and the last id of the page when more follow."""

        async def work(connection: AsyncConnection) -> tuple[list[dict[str, Any]], str | None]:
            await require_membership(connection, conversation_id, user_id)
            found = await store.get_members(
                connection, conversation_id, after=after, limit=limit + 1
            )
            page = found[:limit]
            more = len(found) > limit
            return [member_view(m) for m in page], page[-1].user_id if more else None

        return await self._database.transaction(work)

    async def add_member(
        self, actor_id: str, conversation_id: uuid.UUID, user_id: str, role: str
    ) -> dict[str, Any]:
        await self.check_membership(conversation_id, actor_id)
        await self.directory.require_known([user_id], field="user_id")

        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], EventsToPublish]:
            conversation, me = await require_membership(
                connection, conversation_id, actor_id, lock=True
            )
            require_group(conversation)
            require_manager(me)
            if role == "owner" and me.role != "owner":
                raise InsufficientRole("Only owners may make someone an owner.")
            if await store.get_member(connection, conversation_id, user_id) is not None:
                raise AlreadyMember("That person is already a member.")
            await require_room(connection, conversation_id)
            member = Member(user_id, role, actor_id, utc_now())
            events = await self.add_member_in(connection, conversation, member)
            return member_view(member), events

        return await self._outbox.transaction(work)

    @staticmethod
    async def add_member_in(
        connection: AsyncConnection, conversation: Conversation, member: Member
    ) -> EventsToPublish:
        """Add ``member`` to the locked conversation; the ``member.added`` event."""
        await store.insert_member(connection, conversation, member)
        revision = await store.advance_revision(connection, conversation.id)
        everyone = await store.get_members(connection, conversation.id)
        return [
            conversation_event(
                "member.added",
                {
                    "conversation_id": str(conversation.id),
                    "user_id": member.user_id,
                    "role": member.role,
                    "added_by": member.added_by,
                },
                conversation_id=conversation.id,
                position=revision,
                user_ids=[m.user_id for m in everyone],
            )
        ]

    async def change_role(
        self, actor_id: str, conversation_id: uuid.UUID, user_id: str | None, role: str
    ) -> dict[str, Any]:
        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], EventsToPublish]:
            conversation, me = await require_membership(
                connection, conversation_id, actor_id, lock=True
            )
            require_group(conversation)
            require_manager(me)
            target = await self._target(connection, conversation_id, user_id)
            if me.role != "owner" and "owner" in (role, target.role):
                raise InsufficientRole("Only owners may grant or take away ownership.")
            if target.role == role:
                return member_view(target), []
            if (
                target.role == "owner"
                and await store.count_owners(connection, conversation_id) == 1
            ):
                raise LastOwner
            await store.set_role(connection, conversation_id, target.user_id, role)
            revision = await store.advance_revision(connection, conversation_id)
            everyone = await store.get_members(connection, conversation_id)
            event = conversation_event(
                "member.updated",
                {
                    "conversation_id": str(conversation_id),
                    "user_id": target.user_id,
                    "role": role,
                    "previous_role": target.role,
                    "updated_by": actor_id,
                },
                conversation_id=conversation_id,
                position=revision,
                user_ids=[m.user_id for m in everyone],
            )
            changed = Member(target.user_id, role, target.added_by, target.joined_at)
            return member_view(changed), [event]

        return await self._outbox.transaction(work)

    async def remove_member(
        self, actor_id: str, conversation_id: uuid.UUID, user_id: str | None
    ) -> None:
        """Remove a member, or leave when ``user_id`` is the actor's own."""

        async def work(connection: AsyncConnection) -> tuple[None, EventsToPublish]:
            conversation, me = await require_membership(
                connection, conversation_id, actor_id, lock=True
            )
            require_group(conversation)
            target = await self._target(connection, conversation_id, user_id)
            if target.user_id != actor_id:
                require_manager(me)
                if target.role == "owner" and me.role != "owner":
                    raise InsufficientRole("Only owners may remove an owner.")
            if (
                target.role == "owner"
                and await store.count_owners(connection, conversation_id) == 1
            ):
                raise LastOwner
            everyone = await store.get_members(connection, conversation_id)
            await store.delete_members(connection, conversation_id, [target.user_id])
            revision = await store.advance_revision(connection, conversation_id)
            event = conversation_event(
                "member.removed",
                {
                    "conversation_id": str(conversation_id),
                    "user_id": target.user_id,
                    "removed_by": actor_id,
                },
                conversation_id=conversation_id,
                position=revision,
                user_ids=[m.user_id for m in everyone],
            )
            return None, [event]

        await self._outbox.transaction(work)

    @staticmethod
    async def _target(
        connection: AsyncConnection, conversation_id: uuid.UUID, user_id: str | None
    ) -> Member:
        target = (
            None
            if user_id is None
            else await store.get_member(connection, conversation_id, user_id)
        )
        if target is None:
            raise MemberNotFound
        return target

    # For other services ----------------------------------------------------------------------

    async def members_for_service(
        self, conversation_id: uuid.UUID, user_ids: Sequence[str] | None
    ) -> dict[str, Any]:
        """The conversation's kind and members (only ``user_ids``, when given)."""

        async def work(connection: AsyncConnection) -> dict[str, Any]:
            conversation = await store.get_live_conversation(connection, conversation_id)
            if conversation is None:
                raise ConversationNotFound
            found = await store.get_members(connection, conversation_id, user_ids=user_ids)
            return {
                "conversation_id": str(conversation_id),
                "kind": conversation.kind,
                "members": [{"user_id": m.user_id, "role": m.role} for m in found],
            }

        return await self._database.transaction(work)

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        ids = await self._database.transaction(
            lambda connection: store.get_conversation_ids_of(connection, user_id)
        )
        return [str(conversation_id) for conversation_id in ids]

    async def record_activity(self, reports: Sequence[ActivityReport]) -> None:
        """Move activity forward; several reports of one conversation count as their newest."""
        newest: dict[uuid.UUID, ActivityReport] = {}
        for report in reports:
            seen = newest.get(report.conversation_id)
            if seen is None:
                newest[report.conversation_id] = report
            else:
                newest[report.conversation_id] = ActivityReport(
                    report.conversation_id,
                    max(seen.last_seq, report.last_seq),
                    max(seen.last_message_at, report.last_message_at),
                )
        # In id order, so two concurrent batches lock their rows in the same order.
        ordered = [newest[key] for key in sorted(newest)]
        await self._database.transaction(
            lambda connection: store.record_activity(connection, ordered)
        )
