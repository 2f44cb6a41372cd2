"""The OpenAPI 3.1 document of messages_service, served at
``/api/messages_service/openapi.json``. Limits come from the constants the code enforces."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from messages_service.search import DEFAULT_LIMIT as SEARCH_DEFAULT_LIMIT
from messages_service.search import MAX_LIMIT as SEARCH_MAX_LIMIT
from messages_service.search import MAX_QUERY_LENGTH as SEARCH_MAX_QUERY_LENGTH
from messages_service.service import (
    DEFAULT_PAGE_SIZE,
    MAX_BODY_LENGTH,
    MAX_CLIENT_MSG_ID_LENGTH,
    MAX_EMOJI_LENGTH,
    MAX_PAGE_SIZE,
    MAX_SEQ,
)

_SECURED: Final[list[dict[str, list[str]]]] = [{"bearer": []}]
_PROBLEM: Final = {"$ref": "#/components/responses/Problem"}
_UUID: Final = {"type": "string", "format": "uuid"}
_SEQ: Final = {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_parameter(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _UUID}


def _query_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    problems: tuple[str, ...] = ("401", "403", "404", "422", "503"),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "security": _SECURED,
        "responses": {**responses, **dict.fromkeys(problems, _PROBLEM)},
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


_CONVERSATION = _path_parameter("conversation_id")
_MESSAGE = _path_parameter("message_id")
_EMOJI = _path_parameter("emoji", {"type": "string", "minLength": 1, "maxLength": MAX_EMOJI_LENGTH})
_POINTER_BODY: Final = {
    "type": "object",
    "required": ["seq"],
    "additionalProperties": False,
    "properties": {"seq": _SEQ},
}

DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {"title": "Parley messages_service", "version": "1"},
    "paths": {
        "/api/conversations/{conversation_id}/messages": {
            "post": _operation(
                "sendMessage",
                "Send a message; the same client_msg_id from the same sender returns the original",
                {
                    "201": _json("The new message", _ref("Message")),
                    "200": _json("The original message for this client_msg_id", _ref("Message")),
                },
                parameters=[_CONVERSATION],
                body={
                    "type": "object",
                    "required": ["body", "client_msg_id"],
                    "additionalProperties": False,
                    "properties": {
                        "body": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_BODY_LENGTH,
                            "description": "Markdown as written; mention a member as @[user id]",
                        },
                        "client_msg_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_CLIENT_MSG_ID_LENGTH,
                            "pattern": "^\\S+$",
                        },
                        "reply_to": {"type": ["string", "null"], "format": "uuid"},
                    },
                },
                problems=("400", "401", "403", "404", "413", "415", "422", "429", "503"),
            ),
            "get": _operation(
                "listMessages",
                "History by seq: newest first (optionally before a seq), or oldest first after one",
                {"200": _json("One page of messages, tombstones included", _ref("MessagePage"))},
                parameters=[
                    _CONVERSATION,
                    _query_parameter("before", {"type": "integer", "minimum": 1}),
                    _query_parameter("after", {"type": "integer", "minimum": 0}),
                    _query_parameter(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE_SIZE,
                            "default": DEFAULT_PAGE_SIZE,
                        },
                    ),
                ],
            ),
        },
        "/api/conversations/{conversation_id}/read": {
            "post": _operation(
                "markRead",
                "Move my read pointer forward to seq (never back)",
                {"200": _json("My pointers", _ref("Pointers"))},
                parameters=[_CONVERSATION],
                body=_POINTER_BODY,
                problems=("400", "401", "403", "404", "415", "422", "503"),
            )
        },
        "/api/conversations/{conversation_id}/delivered": {
            "post": _operation(
                "markDelivered",
                "Move my delivery pointer forward to seq (never back)",
                {"200": _json("My pointers", _ref("Pointers"))},
                parameters=[_CONVERSATION],
                body=_POINTER_BODY,
                problems=("400", "401", "403", "404", "415", "422", "503"),
            )
        },
        "/api/messages/{message_id}": {
            "patch": _operation(
                "editMessage",
                "Edit my message",
                {"200": _json("The edited message", _ref("Message"))},
                parameters=[_MESSAGE],
                body={
                    "type": "object",
                    "required": ["body"],
                    "additionalProperties": False,
                    "properties": {
                        "body": {"type": "string", "minLength": 1, "maxLength": MAX_BODY_LENGTH}
                    },
                },
                problems=("400", "401", "403", "404", "409", "413", "415", "422", "503"),
            ),
            "delete": _operation(
                "deleteMessage",
                "Delete my message, leaving a tombstone in history",
                {"204": {"description": "Deleted (or already deleted)"}},
                parameters=[_MESSAGE],
                problems=("401", "403", "404", "503"),
            ),
        },
        "/api/messages/{message_id}/reactions/{emoji}": {
            "put": _operation(
                "addReaction",
                "React with emoji (once per person per emoji)",
                {"200": _json("The message with its reactions", _ref("Message"))},
                parameters=[_MESSAGE, _EMOJI],
                problems=("401", "403", "404", "409", "422", "503"),
            ),
            "delete": _operation(
                "removeReaction",
                "Take my emoji reaction back",
                {"200": _json("The message with its reactions", _ref("Message"))},
                parameters=[_MESSAGE, _EMOJI],
                problems=("401", "403", "404", "409", "422", "503"),
            ),
        },
        "/api/messages/{message_id}/receipts": {
            "get": _operation(
                "getReceipts",
                "Who (besides the sender) has read the message, and who has received it",
                {"200": _json("Receipts", _ref("Receipts"))},
                parameters=[_MESSAGE],
                problems=("401", "403", "404", "409", "503"),
            )
        },
        "/api/unread": {
            "get": _operation(
                "getUnread",
                "My conversations with anything unread: unread and mention counts",
                {"200": _json("Unread counts", _ref("UnreadCounts"))},
                problems=("401", "403", "503"),
            )
        },
        "/api/search": {
            "get": _operation(
                "searchMessages",
                "Full-text search in the conversations I belong to, best match first",
                {"200": _json("One page of hits", _ref("SearchPage"))},
                parameters=[
                    {
                        "name": "q",
                        "in": "query",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": SEARCH_MAX_QUERY_LENGTH,
                        },
                    },
                    _query_parameter(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": SEARCH_MAX_LIMIT,
                            "default": SEARCH_DEFAULT_LIMIT,
                        },
                    ),
                    _query_parameter("cursor", {"type": "string"}),
                    _query_parameter("conversation_id", _UUID),
                ],
                problems=("401", "403", "422", "503"),
            )
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Reaction": {
                "type": "object",
                "required": ["emoji", "count", "user_ids"],
                "properties": {
                    "emoji": {"type": "string"},
                    "count": {"type": "integer", "minimum": 1},
                    "user_ids": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "The first people to react (up to 20)",
                    },
                },
            },
            "Message": {
                "type": "object",
                "required": [
                    *("id", "conversation_id", "seq", "sender", "client_msg_id", "body"),
                    *("reply_to", "created_at", "edited_at", "deleted", "mentions", "reactions"),
                ],
                "properties": {
                    "id": _UUID,
                    "conversation_id": _UUID,
                    "seq": {"type": "integer", "minimum": 1},
                    "sender": {"type": "string", "description": "The sender's principal id"},
                    "client_msg_id": {"type": "string"},
                    "body": {"type": ["string", "null"], "description": "null once deleted"},
                    "reply_to": {"type": ["string", "null"], "format": "uuid"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "edited_at": {"type": ["string", "null"], "format": "date-time"},
                    "deleted": {"type": "boolean"},
                    "mentions": {"type": "array", "items": {"type": "string"}},
                    "reactions": {"type": "array", "items": _ref("Reaction")},
                },
            },
            "MessagePage": {
                "type": "object",
                "required": ["items", "has_more"],
                "properties": {
                    "items": {"type": "array", "items": _ref("Message")},
                    "has_more": {"type": "boolean"},
                },
            },
            "Pointers": {
                "type": "object",
                "required": ["conversation_id", "user_id", "read_seq", "delivered_seq"],
                "properties": {
                    "conversation_id": _UUID,
                    "user_id": {"type": "string"},
                    "read_seq": {"type": "integer"},
                    "delivered_seq": {"type": "integer"},
                },
            },
            "Receipts": {
                "type": "object",
                "required": ["message_id", "conversation_id", "seq", "read_by", "delivered_to"],
                "properties": {
                    "message_id": _UUID,
                    "conversation_id": _UUID,
                    "seq": {"type": "integer"},
                    "read_by": {"type": "array", "items": {"type": "string"}},
                    "delivered_to": {"type": "array", "items": {"type": "string"}},
                },
            },
            "UnreadCounts": {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["conversation_id", "unread", "mentions", "last_seq"],
                            "properties": {
                                "conversation_id": _UUID,
                                "unread": {"type": "integer", "minimum": 0},
                                "mentions": {"type": "integer", "minimum": 0},
                                "last_seq": {"type": "integer", "minimum": 0},
                            },
                        },
                    }
                },
            },
            "SearchHit": {
                "type": "object",
                "required": [
                    *("message_id", "conversation_id", "seq", "sender", "created_at"),
                    *("snippet", "rank"),
                ],
                "properties": {
                    "message_id": _UUID,
                    "conversation_id": _UUID,
                    "seq": {"type": "integer", "minimum": 1},
                    "sender": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "snippet": {
                        "type": "array",
                        "description": "The body around the first match, as plain-text segments",
                        "items": {
                            "type": "object",
                            "required": ["text", "match"],
                            "properties": {
                                "text": {"type": "string"},
                                "match": {"type": "boolean"},
                            },
                        },
                    },
                    "rank": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
            "SearchPage": {
                "type": "object",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": _ref("SearchHit")},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        },
        "responses": {
            "Problem": {
                "description": "An RFC 9457 problem",
                "content": {"application/problem+json": {"schema": {"type": "object"}}},
            }
        },
    },
}


async def openapi_document(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
