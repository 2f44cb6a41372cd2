"""The OpenAPI 3.1 document of conversations_service's public API, served at
``/api/conversations_service/openapi.json``. The internal API (``internal_routes.py``) is for
Parley's services only and is not described here."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conversations_service.routes import (
    DEFAULT_MEMBERS_PAGE_SIZE,
    DEFAULT_PAGE_SIZE,
    MAX_DESCRIPTION_LENGTH,
    MAX_MEMBERS_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_TITLE_LENGTH,
)
from conversations_service.service import MAX_GROUP_MEMBERS, ROLES
from servicekit.requests import MAX_IDENTIFIER_LENGTH

_SECURED: Final[list[dict[str, list[str]]]] = [{"bearer": []}]
_PROBLEM: Final = {"$ref": "#/components/responses/Problem"}
_PRINCIPAL_ID: Final = {"type": "string", "minLength": 1, "maxLength": MAX_IDENTIFIER_LENGTH}
_TIMESTAMP: Final = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _page_parameters(default: int, maximum: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        },
        {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 512}},
    ]


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    problems: tuple[str, ...] = ("401", "403", "404"),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "security": _SECURED,
        "parameters": parameters or [],
        "responses": {**responses, **{status: _PROBLEM for status in problems}},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
        operation["responses"].update({s: _PROBLEM for s in ("400", "413", "415", "422")})
    return operation


_CONVERSATION_ID: Final = _path("conversation_id", {"type": "string", "format": "uuid"})
_INVITATION_ID: Final = _path("invitation_id", {"type": "string", "format": "uuid"})
_MEMBER_ID: Final = _path("user_id", _PRINCIPAL_ID)
_NO_CONTENT: Final = {"204": {"description": "Done"}}


def _answer(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "post": _operation(
            operation_id,
            summary,
            {"200": _json(_ref("Invitation"), "The invitation in its new state")},
            parameters=[_INVITATION_ID],
            problems=("401", "403", "404", "409", "410"),
        )
    }


PATHS: Final[dict[str, Any]] = {
    "/api/conversations": {
        "post": _operation(
            "createConversation",
            "Start a direct conversation (once per pair) or a group",
            {
                "201": _json(_ref("Conversation"), "Created"),
                "200": _json(_ref("Conversation"), "The pair's existing direct conversation"),
            },
            body="NewConversation",
            problems=("401", "403", "503"),
        ),
        "get": _operation(
            "listConversations",
            "My conversations, most recent activity first",
            {"200": _json(_ref("ConversationPage"), "One page")},
            parameters=_page_parameters(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            problems=("401", "403", "422"),
        ),
    },
    "/api/conversations/{conversation_id}": {
        "get": _operation(
            "getConversation",
            "One of my conversations",
            {"200": _json(_ref("Conversation"), "The conversation")},
            parameters=[_CONVERSATION_ID],
        ),
        "patch": _operation(
            "updateConversation",
            "Change a group's title or description (owners and admins)",
            {"200": _json(_ref("Conversation"), "The changed conversation")},
            parameters=[_CONVERSATION_ID],
            body="ConversationChanges",
            problems=("401", "403", "404", "409"),
        ),
        "delete": _operation(
            "deleteConversation",
            "Delete a group (owners)",
            _NO_CONTENT,
            parameters=[_CONVERSATION_ID],
            problems=("401", "403", "404", "409"),
        ),
    },
    "/api/conversations/{conversation_id}/members": {
        "get": _operation(
            "listMembers",
            "The conversation's members, by user id",
            {"200": _json(_ref("MemberPage"), "One page")},
            parameters=[
                _CONVERSATION_ID,
                *_page_parameters(DEFAULT_MEMBERS_PAGE_SIZE, MAX_MEMBERS_PAGE_SIZE),
            ],
            problems=("401", "403", "404", "422"),
        ),
        "post": _operation(
            "addMember",
            "Add someone to a group (owners and admins; only owners add owners)",
            {"201": _json(_ref("Member"), "Added")},
            parameters=[_CONVERSATION_ID],
            body="NewMember",
            problems=("401", "403", "404", "409", "503"),
        ),
    },
    "/api/conversations/{conversation_id}/members/{user_id}": {
        "patch": _operation(
            "changeRole",
            "Change a member's role (owners and admins; only owners touch owners)",
            {"200": _json(_ref("Member"), "The member with the new role")},
            parameters=[_CONVERSATION_ID, _MEMBER_ID],
            body="RoleChange",
            problems=("401", "403", "404", "409"),
        ),
        "delete": _operation(
            "removeMember",
            "Remove a member, or leave with your own id",
            _NO_CONTENT,
            parameters=[_CONVERSATION_ID, _MEMBER_ID],
            problems=("401", "403", "404", "409"),
        ),
    },
    "/api/conversations/{conversation_id}/invitations": {
        "get": _operation(
            "listConversationInvitations",
            "A group's pending invitations, newest first (owners and admins)",
            {"200": _json(_ref("InvitationPage"), "One page")},
            parameters=[_CONVERSATION_ID, *_page_parameters(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)],
            problems=("401", "403", "404", "422"),
        ),
        "post": _operation(
            "invite",
            "Invite someone to a group (owners and admins)",
            {"201": _json(_ref("Invitation"), "Invited")},
            parameters=[_CONVERSATION_ID],
            body="NewInvitation",
            problems=("401", "403", "404", "409", "503"),
        ),
    },
    "/api/invitations": {
        "get": _operation(
            "listMyInvitations",
            "My pending invitations, newest first",
            {"200": _json(_ref("InvitationPage"), "One page")},
            parameters=_page_parameters(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            problems=("401", "403", "422"),
        ),
    },
    "/api/invitations/{invitation_id}/accept": _answer(
        "acceptInvitation", "Accept an invitation to me: I become a member"
    ),
    "/api/invitations/{invitation_id}/decline": _answer(
        "declineInvitation", "Decline an invitation to me"
    ),
    "/api/invitations/{invitation_id}/revoke": _answer(
        "revokeInvitation", "Revoke an invitation (its inviter, or an owner or admin)"
    ),
}

_TITLE: Final = {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_LENGTH}
_DESCRIPTION: Final = {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION_LENGTH}
_ROLE: Final = {"type": "string", "enum": list(ROLES)}

SCHEMAS: Final[dict[str, Any]] = {
    "NewConversation": {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind"],
        "properties": {
            "kind": {"type": "string", "enum": ["direct", "group"]},
            "title": {**_TITLE, "description": "Required for groups; not allowed for direct."},
            "description": {**_DESCRIPTION, "description": "Groups only."},
            "member_ids": {
                "type": "array",
                "items": _PRINCIPAL_ID,
                "uniqueItems": True,
                "maxItems": MAX_GROUP_MEMBERS - 1,
                "description": "The others: exactly one for a direct conversation.",
            },
        },
    },
    "ConversationChanges": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {"title": _TITLE, "description": _DESCRIPTION},
    },
    "NewMember": {
        "type": "object",
        "additionalProperties": False,
        "required": ["user_id"],
        "properties": {"user_id": _PRINCIPAL_ID, "role": {**_ROLE, "default": "member"}},
    },
    "RoleChange": {
        "type": "object",
        "additionalProperties": False,
        "required": ["role"],
        "properties": {"role": _ROLE},
    },
    "NewInvitation": {
        "type": "object",
        "additionalProperties": False,
        "required": ["user_id"],
        "properties": {"user_id": _PRINCIPAL_ID},
    },
    "Conversation": {
        "type": "object",
        "required": [
            *("id", "kind", "title", "description", "created_by", "created_at"),
            *("last_activity_at", "last_seq", "revision", "members", "my_role"),
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "kind": {"type": "string", "enum": ["direct", "group"]},
            "title": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "created_by": {"type": "string"},
            "created_at": _TIMESTAMP,
            "last_activity_at": _TIMESTAMP,
            "last_seq": {"type": ["integer", "null"]},
            "revision": {"type": "integer", "description": "Position of the newest change."},
            "members": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["user_id", "role"],
                    "properties": {"user_id": {"type": "string"}, "role": _ROLE},
                },
            },
            "my_role": _ROLE,
        },
    },
    "Member": {
        "type": "object",
        "required": ["user_id", "role", "added_by", "joined_at"],
        "properties": {
            "user_id": {"type": "string"},
            "role": _ROLE,
            "added_by": {"type": "string"},
            "joined_at": _TIMESTAMP,
        },
    },
    "Invitation": {
        "type": "object",
        "required": [
            *("id", "conversation_id", "conversation_title", "invitee_id", "inviter_id"),
            *("state", "created_at", "expires_at", "responded_at"),
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "conversation_id": {"type": "string", "format": "uuid"},
            "conversation_title": {"type": ["string", "null"]},
            "invitee_id": {"type": "string"},
            "inviter_id": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["pending", "accepted", "declined", "revoked", "expired"],
            },
            "created_at": _TIMESTAMP,
            "expires_at": _TIMESTAMP,
            "responded_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}
for _name, _item in (
    ("ConversationPage", "Conversation"),
    ("MemberPage", "Member"),
    ("InvitationPage", "Invitation"),
):
    SCHEMAS[_name] = {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(_item)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }

DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {"title": "Parley conversations_service", "version": "1"},
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": SCHEMAS,
        "responses": {
            "Problem": {
                "description": "An RFC 9457 problem with a stable code",
                "content": {
                    "application/problem+json": {
                        "schema": {
                            "type": "object",
                            "required": ["type", "title", "status", "code", "detail"],
                            "properties": {
                                "type": {"type": "string"},
                                "title": {"type": "string"},
                                "status": {"type": "integer"},
                                "code": {"type": "string"},
                                "detail": {"type": "string"},
                                "instance": {"type": "string"},
                                "errors": {"type": "array", "items": {"type": "object"}},
                            },
                        }
                    }
                },
            }
        },
    },
}


async def openapi_document(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
