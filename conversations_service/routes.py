"""The Conversations API (BRIEF §6): thin handlers that read and check input, call the service
and render its answer. Reads need the scope ``chat.read`` and writes ``chat.write`` (for machine
clients; people act through membership alone).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conversations_service.service import MAX_GROUP_MEMBERS, ROLES
from conversations_service.state import authenticated, conversations_state
from servicekit.cursors import decode_cursor, encode_cursor
from servicekit.errors import ValidationFailed
from servicekit.requests import (
    Fields,
    identifier_problem,
    parse_uuid,
    path_uuid,
    query_integer,
    query_text,
    read_json_object,
)
from servicekit.timestamps import utc_timestamp

READ: Final = "chat.read"
WRITE: Final = "chat.write"
MAX_TITLE_LENGTH: Final = 200  # characters
MAX_DESCRIPTION_LENGTH: Final = 2000  # characters
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
DEFAULT_MEMBERS_PAGE_SIZE: Final = 200
MAX_MEMBERS_PAGE_SIZE: Final = MAX_GROUP_MEMBERS
MAX_CURSOR_LENGTH: Final = 512


def _conversation_id(request: Request) -> uuid.UUID:
    return path_uuid(request, "conversation_id", what="conversation")


def _invitation_id(request: Request) -> uuid.UUID:
    return path_uuid(request, "invitation_id", what="invitation")


def _member_id(request: Request) -> str | None:
    """The ``{user_id}`` path parameter, or None when it cannot name anybody."""
    value = request.path_params["user_id"]
    return None if identifier_problem(value) is not None else str(value)


def _limit(request: Request, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    limit = query_integer(request, "limit", default=default, minimum=1, maximum=maximum)
    assert limit is not None
    return limit


def _cursor(request: Request, keys: dict[str, type]) -> dict[str, Any] | None:
    raw = query_text(request, "cursor", max_length=MAX_CURSOR_LENGTH)
    return None if raw is None else decode_cursor(raw, keys=keys)


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid.",
        errors=[{"field": "cursor", "message": "Use a next_cursor from a previous page."}],
        code="invalid_cursor",
    )


def _page(
    items: list[dict[str, Any]], key: str, next_position: Mapping[str, str | int] | None
) -> Response:
    return JSONResponse(
        {key: items, "next_cursor": None if next_position is None else encode_cursor(next_position)}
    )


# Conversations -------------------------------------------------------------------------------


async def create_conversation(request: Request) -> Response:
    """``POST /api/conversations``: 201 with the new conversation; 200 with the existing direct
    conversation when the pair already has one."""
    principal = await authenticated(request, WRITE)
    fields = Fields(
        await read_json_object(request), allowed={"kind", "title", "description", "member_ids"}
    )
    kind = fields.choice("kind", ("direct", "group"), required=True)
    title = fields.text(
        "title", required=kind == "group", min_length=1, max_length=MAX_TITLE_LENGTH
    )
    description = fields.text("description", max_length=MAX_DESCRIPTION_LENGTH, single_line=False)
    member_ids = fields.identifier_list(
        "member_ids", required=kind == "direct", max_items=MAX_GROUP_MEMBERS - 1
    )
    if kind == "direct":
        for name in ("title", "description"):
            if fields.present(name):
                fields.add_error(name, "A direct conversation has no title or description.")
        if member_ids is not None and len(member_ids) != 1:
            fields.add_error("member_ids", "A direct conversation names exactly one other person.")
    if member_ids is not None and principal.id in member_ids:
        fields.add_error("member_ids", "Do not name yourself; you are in it already.")
    fields.finish()
    state = conversations_state(request)
    if kind == "direct":
        assert member_ids is not None
        view, created = await state.conversations.create_direct(principal.id, member_ids[0])
        return JSONResponse(view, status_code=201 if created else 200)
    assert title is not None
    view = await state.conversations.create_group(
        principal.id, title, description or None, member_ids or []
    )
    return JSONResponse(view, status_code=201)


async def list_conversations(request: Request) -> Response:
    """``GET /api/conversations?limit=&cursor=``: mine, most recent activity first."""
    principal = await authenticated(request, READ)
    limit = _limit(request)
    position = _cursor(request, {"t": str, "c": str})
    after = None
    if position is not None:
        conversation_id = parse_uuid(position["c"])
        try:
            moment = datetime.fromisoformat(position["t"])
        except ValueError:
            raise _invalid_cursor() from None
        if conversation_id is None or moment.utcoffset() is None:
            raise _invalid_cursor()
        after = (moment, conversation_id)
    views, following = await conversations_state(request).conversations.list_conversations(
        principal.id, after, limit
    )
    next_position = (
        None if following is None else {"t": utc_timestamp(following[0]), "c": str(following[1])}
    )
    return _page(views, "items", next_position)


async def get_conversation(request: Request) -> Response:
    principal = await authenticated(request, READ)
    conversation_id = _conversation_id(request)
    view = await conversations_state(request).conversations.get_conversation(
        principal.id, conversation_id
    )
    return JSONResponse(view)


async def update_conversation(request: Request) -> Response:
    """``PATCH /api/conversations/{id}``: ``{"title"?, "description"?}`` (null clears it)."""
    principal = await authenticated(request, WRITE)
    conversation_id = _conversation_id(request)
    fields = Fields(await read_json_object(request), allowed={"title", "description"})
    changes: dict[str, str | None] = {}
    if fields.present("title"):
        changes["title"] = fields.text(
            "title", required=True, min_length=1, max_length=MAX_TITLE_LENGTH
        )
    if fields.present("description"):
        description = fields.text(
            "description", max_length=MAX_DESCRIPTION_LENGTH, single_line=False
        )
        changes["description"] = description or None
    if not fields.body:
        fields.add_error("title", "Give a title, a description or both.")
    fields.finish()
    view = await conversations_state(request).conversations.update_conversation(
        principal.id, conversation_id, changes
    )
    return JSONResponse(view)


async def delete_conversation(request: Request) -> Response:
    principal = await authenticated(request, WRITE)
    conversation_id = _conversation_id(request)
    await conversations_state(request).conversations.delete_conversation(
        principal.id, conversation_id
    )
    return Response(status_code=204)


# Members -------------------------------------------------------------------------------------


async def list_members(request: Request) -> Response:
    """``GET /api/conversations/{id}/members?limit=&cursor=``: by user id."""
    principal = await authenticated(request, READ)
    conversation_id = _conversation_id(request)
    limit = _limit(request, DEFAULT_MEMBERS_PAGE_SIZE, MAX_MEMBERS_PAGE_SIZE)
    position = _cursor(request, {"u": str})
    after = None if position is None else str(position["u"])
    views, last = await conversations_state(request).conversations.list_members(
        principal.id, conversation_id, after, limit
    )
    return _page(views, "items", None if last is None else {"u": last})


async def add_member(request: Request) -> Response:
    """``POST /api/conversations/{id}/members``: ``{"user_id", "role"?}`` (default member)."""
    principal = await authenticated(request, WRITE)
    conversation_id = _conversation_id(request)
    fields = Fields(await read_json_object(request), allowed={"user_id", "role"})
    user_id = fields.identifier("user_id", required=True)
    role = fields.choice("role", ROLES) or "member"
    fields.finish()
    assert user_id is not None
    view = await conversations_state(request).conversations.add_member(
        principal.id, conversation_id, user_id, role
    )
    return JSONResponse(view, status_code=201)


async def update_member(request: Request) -> Response:
    """``PATCH /api/conversations/{id}/members/{user_id}``: ``{"role"}``."""
    principal = await authenticated(request, WRITE)
    conversation_id = _conversation_id(request)
    fields = Fields(await read_json_object(request), allowed={"role"})
    role = fields.choice("role", ROLES, required=True)
    fields.finish()
    assert role is not None
    view = await conversations_state(request).conversations.change_role(
        principal.id, conversation_id, _member_id(request), role
    )
    return JSONResponse(view)


async def remove_member(request: Request) -> Response:
    """``DELETE /api/conversations/{id}/members/{user_id}``: removal; your own id leaves."""
    principal = await authenticated(request, WRITE)
    conversation_id = _conversation_id(request)
    await conversations_state(request).conversations.remove_member(
        principal.id, conversation_id, _member_id(request)
    )
    return Response(status_code=204)


# Invitations ---------------------------------------------------------------------------------


async def create_invitation(request: Request) -> Response:
    """``POST /api/conversations/{id}/invitations``: ``{"user_id"}``."""
    principal = await authenticated(request, WRITE)
    conversation_id = _conversation_id(request)
    fields = Fields(await read_json_object(request), allowed={"user_id"})
    user_id = fields.identifier("user_id", required=True)
    fields.finish()
    assert user_id is not None
    view = await conversations_state(request).invitations.invite(
        principal.id, conversation_id, user_id
    )
    return JSONResponse(view, status_code=201)


def _invitation_cursor(request: Request) -> uuid.UUID | None:
    position = _cursor(request, {"i": str})
    if position is None:
        return None
    before = parse_uuid(position["i"])
    if before is None:
        raise _invalid_cursor()
    return before


async def list_conversation_invitations(request: Request) -> Response:
    """``GET /api/conversations/{id}/invitations``: the group's pending ones (owners, admins)."""
    principal = await authenticated(request, READ)
    conversation_id = _conversation_id(request)
    limit = _limit(request)
    before = _invitation_cursor(request)
    views, last = await conversations_state(request).invitations.list_for_conversation(
        principal.id, conversation_id, before, limit
    )
    return _page(views, "items", None if last is None else {"i": str(last)})


async def list_my_invitations(request: Request) -> Response:
    """``GET /api/invitations``: the caller's pending invitations, newest first."""
    principal = await authenticated(request, READ)
    limit = _limit(request)
    before = _invitation_cursor(request)
    views, last = await conversations_state(request).invitations.list_mine(
        principal.id, before, limit
    )
    return _page(views, "items", None if last is None else {"i": str(last)})


async def accept_invitation(request: Request) -> Response:
    principal = await authenticated(request, WRITE)
    view = await conversations_state(request).invitations.accept(
        principal.id, _invitation_id(request)
    )
    return JSONResponse(view)


async def decline_invitation(request: Request) -> Response:
    principal = await authenticated(request, WRITE)
    view = await conversations_state(request).invitations.decline(
        principal.id, _invitation_id(request)
    )
    return JSONResponse(view)


async def revoke_invitation(request: Request) -> Response:
    principal = await authenticated(request, WRITE)
    view = await conversations_state(request).invitations.revoke(
        principal.id, _invitation_id(request)
    )
    return JSONResponse(view)
