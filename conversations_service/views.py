"""The JSON shapes of conversations, members and invitations, shared by the API and events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conversations_service.store import Conversation, Invitation, Member
from servicekit.timestamps import utc_timestamp


def member_view(member: Member) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "role": member.role,
        "added_by": member.added_by,
        "joined_at": utc_timestamp(member.joined_at),
    }


def conversation_view(
    conversation: Conversation, members: Sequence[Member], my_role: str | None = None
) -> dict[str, Any]:
    """The conversation with every member's id and role, and the caller's role if given."""
    view: dict[str, Any] = {
        "id": str(conversation.id),
        "kind": conversation.kind,
        "title": conversation.title,
        "description": conversation.description,
        "created_by": conversation.created_by,
        "created_at": utc_timestamp(conversation.created_at),
        "last_activity_at": utc_timestamp(conversation.last_activity_at),
        "last_seq": conversation.last_seq,
        # The position of the newest change its members were sent as an event.
        "revision": conversation.revision,
        "members": [{"user_id": m.user_id, "role": m.role} for m in members],
    }
    if my_role is not None:
        view["my_role"] = my_role
    return view


def invitation_view(
    invitation: Invitation, now: datetime, conversation_title: str | None
) -> dict[str, Any]:
    return {
        "id": str(invitation.id),
        "conversation_id": str(invitation.conversation_id),
        "conversation_title": conversation_title,
        "invitee_id": invitation.invitee_id,
        "inviter_id": invitation.inviter_id,
        "state": invitation.effective_state(now),
        "created_at": utc_timestamp(invitation.created_at),
        "expires_at": utc_timestamp(invitation.expires_at),
        "responded_at": None
        if invitation.responded_at is None
        else utc_timestamp(invitation.responded_at),
    }
