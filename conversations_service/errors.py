"""The errors conversations_service shows to clients, one class per case.

Each extends a ``servicekit.errors`` family, so its status is the family's and its ``code`` names
the case::

    NotFound (404)       ConversationNotFound, MemberNotFound, InvitationNotFound
    Forbidden (403)      InsufficientRole
    Conflict (409)       DirectConversationImmutable, LastOwner, AlreadyMember,
                         InvitationAlreadyPending, InvitationNotPending, MemberLimitReached
    InvitationExpired (410 invitation_expired)
    UnknownUsers (422 unknown_user, naming them in ``unknown_user_ids``)

A conversation the caller does not belong to is ``ConversationNotFound`` whatever they asked,
so nobody learns that a conversation exists by probing its routes.
"""

from __future__ import annotations

from collections.abc import Sequence

from servicekit.errors import Conflict, Forbidden, NotFound, ParleyError


class ConversationNotFound(NotFound):
    # The same title and detail as an invalid id gets (servicekit.requests.path_uuid).
    code = "conversation_not_found"

    def __init__(self) -> None:
        super().__init__("There is no such conversation.")


class MemberNotFound(NotFound):
    code = "member_not_found"

    def __init__(self) -> None:
        super().__init__("That person is not a member of this conversation.")


class InvitationNotFound(NotFound):
    code = "invitation_not_found"

    def __init__(self) -> None:
        super().__init__("There is no such invitation.")


class InsufficientRole(Forbidden):
    code = "insufficient_role"
    title = "Your role in this conversation does not allow this"


class DirectConversationImmutable(Conflict):
    code = "direct_conversation_immutable"
    title = "A direct conversation cannot be changed"

    def __init__(self) -> None:
        super().__init__(
            "A direct conversation always has exactly its two people and no title; "
            "start a group to talk with more."
        )


class LastOwner(Conflict):
    code = "last_owner"
    title = "A group needs an owner"

    def __init__(self) -> None:
        super().__init__(
            "You are the group's last owner: make someone else an owner first, or delete the group."
        )


class AlreadyMember(Conflict):
    code = "already_member"
    title = "Already a member"


class InvitationAlreadyPending(Conflict):
    code = "invitation_pending"
    title = "An invitation is already pending"


class InvitationNotPending(Conflict):
    code = "invitation_not_pending"
    title = "The invitation is no longer pending"


class MemberLimitReached(Conflict):
    code = "member_limit_reached"
    title = "The group is full"


class InvitationExpired(ParleyError):
    status = 410
    code = "invitation_expired"
    title = "The invitation has expired"

    def __init__(self) -> None:
        super().__init__("The invitation has expired; ask for a new one.")


class UnknownUsers(ParleyError):
    """Ids that name nobody this service or the people directory knows."""

    status = 422
    code = "unknown_user"
    title = "Unknown users"

    def __init__(self, field: str, user_ids: Sequence[str]) -> None:
        super().__init__(
            "Some of the ids name nobody: " + ", ".join(user_ids),
            extra={
                "unknown_user_ids": list(user_ids),
                "errors": [{"field": field, "message": f"Unknown user: {u}"} for u in user_ids],
            },
        )
