"""What conversations_service's routes need, built once in ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from conversations_service.directory import Directory
from conversations_service.invitations import InvitationService
from conversations_service.service import ConversationService
from servicekit.authentication import BearerAuthentication
from servicekit.tokens import Principal


@dataclass(frozen=True)
class ConversationsState:
    authentication: BearerAuthentication
    directory: Directory
    conversations: ConversationService
    invitations: InvitationService


def conversations_state(request: Request) -> ConversationsState:
    state: ConversationsState = request.app.state.conversations
    return state


async def authenticated(request: Request, scope: str) -> Principal:
    """The caller, refused unless a machine caller's token has ``scope``; recorded as known."""
    state = conversations_state(request)
    principal = await state.authentication.principal(request)
    principal.require_scope(scope)
    await state.directory.remember(principal)
    return principal
