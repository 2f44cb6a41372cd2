"""The rules of invitations to groups.

    pending ──accept──► accepted   (the invitee becomes a member)
       │ ──decline──► declined
       │ ──revoke───► revoked      (by the inviter, or an owner or admin of the group)
       └ (expires_at passes) ► expired

Owners and admins invite; only the invitee accepts or declines, and anyone else is told the
invitation does not exist. Expiry is evaluated whenever an invitation is read or acted on: an
expired invitation is shown as "expired" and cannot be accepted (410 ``invitation_expired``);
it is stored as expired when a new invitation replaces it. Accepting, declining and revoking
again what is already so answers as the first time did, so a client may retry them.

Invitation events are addressed to the invitee and the inviter (``user_ids``), not to the whole
conversation, so they carry no ``conversation_id``; their ``position`` is the invitation's own
step (1 when created, 2 when answered), because members who never see them must not read them
as gaps in the conversation's revisions.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from conversations_service import store
from conversations_service.directory import Directory
from conversations_service.errors import (
    AlreadyMember,
    InsufficientRole,
    InvitationAlreadyPending,
    InvitationExpired,
    InvitationNotFound,
    InvitationNotPending,
)
from conversations_service.service import (
    EVENT_TOPIC,
    MANAGERS,
    ConversationService,
    new_id,
    require_group,
    require_manager,
    require_membership,
    require_room,
    utc_now,
)
from conversations_service.store import Invitation, Member
from conversations_service.views import invitation_view
from servicekit.db import Database
from servicekit.events import Event
from servicekit.outbox import EventsToPublish, Outbox

CREATED_POSITION = 1
ANSWERED_POSITION = 2


def invitation_event(
    event_type: str, invitation: Invitation, now: datetime, title: str | None
) -> tuple[str, Event]:
    return EVENT_TOPIC, Event(
        type=event_type,
        data=invitation_view(invitation, now, title),
        position=CREATED_POSITION if event_type == "invitation.created" else ANSWERED_POSITION,
        user_ids=tuple(sorted({invitation.invitee_id, invitation.inviter_id})),
    )


class InvitationService:
    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        directory: Directory,
        conversations: ConversationService,
        lifetime: timedelta,
    ) -> None:
        self._database = database
        self._outbox = outbox
        self._directory = directory
        self._conversations = conversations
        self._lifetime = lifetime

    async def invite(
        self, inviter_id: str, conversation_id: uuid.UUID, invitee_id: str
    ) -> dict[str, Any]:
        await self._conversations.check_membership(conversation_id, inviter_id)
        await self._directory.require_known([invitee_id], field="user_id")

        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], EventsToPublish]:
            conversation, me = await require_membership(
                connection, conversation_id, inviter_id, lock=True
            )
            require_group(conversation)
            require_manager(me)
            if await store.get_member(connection, conversation_id, invitee_id) is not None:
                raise AlreadyMember("That person is already a member.")
            now = utc_now()
            earlier = await store.get_pending_invitation(connection, conversation_id, invitee_id)
            if earlier is not None:
                if earlier.effective_state(now) == "pending":
                    raise InvitationAlreadyPending("That person already has a pending invitation.")
                await store.set_invitation_state(connection, earlier.id, "expired", now)
            await require_room(connection, conversation_id)
            invitation = Invitation(
                id=new_id(),
                conversation_id=conversation_id,
                invitee_id=invitee_id,
                inviter_id=inviter_id,
                state="pending",
                created_at=now,
                expires_at=now + self._lifetime,
                responded_at=None,
            )
            await store.insert_invitation(connection, invitation)
            event = invitation_event("invitation.created", invitation, now, conversation.title)
            return invitation_view(invitation, now, conversation.title), [event]

        return await self._outbox.transaction(work)

    async def accept(self, invitee_id: str, invitation_id: uuid.UUID) -> dict[str, Any]:
        """Accept the invitation: the invitee becomes a member of the group."""
        return await self._answer(invitee_id, invitation_id, "accepted")

    async def decline(self, invitee_id: str, invitation_id: uuid.UUID) -> dict[str, Any]:
        return await self._answer(invitee_id, invitation_id, "declined")

    async def _answer(
        self, invitee_id: str, invitation_id: uuid.UUID, answer: str
    ) -> dict[str, Any]:
        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], EventsToPublish]:
            invitation = await store.get_invitation(connection, invitation_id, lock=True)
            if invitation is None or invitation.invitee_id != invitee_id:
                raise InvitationNotFound
            conversation = await store.lock_live_conversation(
                connection, invitation.conversation_id
            )
            title = None if conversation is None else conversation.title
            now = utc_now()
            settled = _settled(invitation, now, answer)
            if settled:
                return invitation_view(invitation, now, title), []
            if conversation is None:  # deleted groups revoke their invitations; belt and braces
                raise InvitationNotFound
            answered = await store.set_invitation_state(connection, invitation.id, answer, now)
            events: list[tuple[str, Event]] = [
                invitation_event(f"invitation.{answer}", answered, now, title)
            ]
            already_member = await store.get_member(connection, conversation.id, invitee_id)
            if answer == "accepted" and already_member is None:
                await require_room(connection, conversation.id)
                member = Member(invitee_id, "member", invitation.inviter_id, now)
                events.extend(
                    await ConversationService.add_member_in(connection, conversation, member)
                )
            return invitation_view(answered, now, title), events

        return await self._outbox.transaction(work)

    async def revoke(self, actor_id: str, invitation_id: uuid.UUID) -> dict[str, Any]:
        """Revoke a pending invitation (its inviter, or an owner or admin of the group)."""

        async def work(connection: AsyncConnection) -> tuple[dict[str, Any], EventsToPublish]:
            invitation = await store.get_invitation(connection, invitation_id, lock=True)
            if invitation is None:
                raise InvitationNotFound
            conversation = await store.lock_live_conversation(
                connection, invitation.conversation_id
            )
            actor = (
                None
                if conversation is None
                else await store.get_member(connection, conversation.id, actor_id)
            )
            if actor_id == invitation.invitee_id:
                raise InsufficientRole("Decline an invitation to you instead of revoking it.")
            if actor_id != invitation.inviter_id and (actor is None or actor.role not in MANAGERS):
                raise InvitationNotFound
            title = None if conversation is None else conversation.title
            now = utc_now()
            if _settled(invitation, now, "revoked"):
                return invitation_view(invitation, now, title), []
            revoked = await store.set_invitation_state(connection, invitation.id, "revoked", now)
            event = invitation_event("invitation.revoked", revoked, now, title)
            return invitation_view(revoked, now, title), [event]

        return await self._outbox.transaction(work)

    async def list_mine(
        self, invitee_id: str, before: uuid.UUID | None, limit: int
    ) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
        """A page of the caller's pending invitations, newest first, and where the next starts."""
        return await self._page(before, limit, invitee_id=invitee_id)

    async def list_for_conversation(
        self, user_id: str, conversation_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
        """A page of a group's pending invitations (owners and admins)."""

        async def check(connection: AsyncConnection) -> None:
            _, me = await require_membership(connection, conversation_id, user_id)
            require_manager(me)

        await self._database.transaction(check)
        return await self._page(before, limit, conversation_id=conversation_id)

    async def _page(
        self,
        before: uuid.UUID | None,
        limit: int,
        *,
        invitee_id: str | None = None,
        conversation_id: uuid.UUID | None = None,
    ) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
        async def work(
            connection: AsyncConnection,
        ) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
            now = utc_now()
            found = await store.get_pending_invitations_page(
                connection,
                now=now,
                invitee_id=invitee_id,
                conversation_id=conversation_id,
                before=before,
                limit=limit + 1,
            )
            page = found[:limit]
            titles = await store.get_titles(connection, [i.conversation_id for i in page])
            views = [
                invitation_view(i, now, titles[i.conversation_id])
                for i in page
                if i.conversation_id in titles
            ]
            return views, page[-1].id if len(found) > limit else None

        return await self._database.transaction(work)


def _settled(invitation: Invitation, now: datetime, answer: str) -> bool:
    """Whether ``answer`` was already given (a retry); raise if the invitation cannot take it."""
    state = invitation.effective_state(now)
    if state == answer:
        return True
    if state == "expired":
        raise InvitationExpired
    if state != "pending":
        raise InvitationNotPending(f"The invitation was already {state}.")
    return False
