"""messages_service's HTTP API: read the request, ask the service, write the answer.

Every route needs a bearer access token (``app.state.authentication``)::

    POST   /api/conversations/{conversation_id}/messages    send (201 new, 200 repeated)
    GET    /api/conversations/{conversation_id}/messages    history: ?before=|after=&limit=
    POST   /api/conversations/{conversation_id}/read        move my read pointer forward
    POST   /api/conversations/{conversation_id}/delivered   move my delivery pointer forward
    PATCH  /api/messages/{message_id}                       edit (author only)
    DELETE /api/messages/{message_id}                       delete, leaving a tombstone
    PUT    /api/messages/{message_id}/reactions/{emoji}     react (idempotent)
    DELETE /api/messages/{message_id}/reactions/{emoji}     take a reaction back
    GET    /api/messages/{message_id}/receipts              who has read / received it
    GET    /api/unread                                      my unread and mention counts
    GET    /api/search                                      search.py
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from messages_service import search
from messages_service.openapi import openapi_document
from messages_service.service import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_SEQ,
    MessagesService,
    check_emoji,
    read_edit_request,
    read_pointer_request,
    read_send_request,
)
from servicekit.errors import ValidationFailed
from servicekit.requests import path_uuid, query_integer, read_json_object
from servicekit.tokens import Principal


def _service(request: Request) -> MessagesService:
    service: MessagesService = request.app.state.messages
    return service


async def _principal(request: Request) -> Principal:
    principal: Principal = await request.app.state.authentication.principal(request)
    return principal


async def send_message(request: Request) -> Response:
    principal = await _principal(request)
    conversation_id = path_uuid(request, "conversation_id", what="conversation")
    send = read_send_request(await read_json_object(request))
    result = await _service(request).send(principal, conversation_id, send)
    return JSONResponse(
        result.message.to_json(),
        status_code=201 if result.created else 200,
        headers={"Location": f"/api/messages/{result.message.id}"},
    )


async def list_messages(request: Request) -> Response:
    principal = await _principal(request)
    conversation_id = path_uuid(request, "conversation_id", what="conversation")
    before = query_integer(request, "before", default=None, minimum=1, maximum=MAX_SEQ)
    after = query_integer(request, "after", default=None, minimum=0, maximum=MAX_SEQ)
    limit = query_integer(
        request, "limit", default=DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE
    )
    if before is not None and after is not None:
        raise ValidationFailed(
            "Give before or after, not both.",
            errors=[{"field": "before", "message": "Not together with after."}],
        )
    assert limit is not None
    # One more than asked tells whether another page follows.
    page = await _service(request).history(
        principal, conversation_id, before=before, after=after, limit=limit + 1
    )
    return JSONResponse(
        {"items": [message.to_json() for message in page[:limit]], "has_more": len(page) > limit}
    )


async def mark_read(request: Request) -> Response:
    return await _move_pointer(request, read=True)


async def mark_delivered(request: Request) -> Response:
    return await _move_pointer(request, read=False)


async def _move_pointer(request: Request, *, read: bool) -> Response:
    principal = await _principal(request)
    conversation_id = path_uuid(request, "conversation_id", what="conversation")
    seq = read_pointer_request(await read_json_object(request))
    pointers = await _service(request).move_pointer(principal, conversation_id, seq, read=read)
    return JSONResponse(pointers.to_json())


async def edit_message(request: Request) -> Response:
    principal = await _principal(request)
    message_id = path_uuid(request, "message_id", what="message")
    body = read_edit_request(await read_json_object(request))
    message = await _service(request).edit(principal, message_id, body)
    return JSONResponse(message.to_json())


async def delete_message(request: Request) -> Response:
    principal = await _principal(request)
    message_id = path_uuid(request, "message_id", what="message")
    await _service(request).delete(principal, message_id)
    return Response(status_code=204)


async def add_reaction(request: Request) -> Response:
    return await _set_reaction(request, present=True)


async def remove_reaction(request: Request) -> Response:
    return await _set_reaction(request, present=False)


async def _set_reaction(request: Request, *, present: bool) -> Response:
    principal = await _principal(request)
    message_id = path_uuid(request, "message_id", what="message")
    emoji = check_emoji(request.path_params["emoji"])
    message = await _service(request).react(principal, message_id, emoji, present=present)
    return JSONResponse(message.to_json())


async def get_receipts(request: Request) -> Response:
    principal = await _principal(request)
    message_id = path_uuid(request, "message_id", what="message")
    receipts = await _service(request).receipts(principal, message_id)
    return JSONResponse(receipts.to_json())


async def get_unread(request: Request) -> Response:
    principal = await _principal(request)
    counts = await _service(request).unread(principal)
    return JSONResponse(
        {
            "items": [
                {
                    "conversation_id": str(count.conversation_id),
                    "unread": count.unread,
                    "mentions": count.mentions,
                    "last_seq": count.last_seq,
                }
                for count in counts
            ]
        }
    )


ROUTES: list[BaseRoute] = [
    Route("/api/conversations/{conversation_id}/messages", send_message, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/messages", list_messages, methods=["GET"]),
    Route("/api/conversations/{conversation_id}/read", mark_read, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/delivered", mark_delivered, methods=["POST"]),
    Route("/api/messages/{message_id}", edit_message, methods=["PATCH"]),
    Route("/api/messages/{message_id}", delete_message, methods=["DELETE"]),
    Route("/api/messages/{message_id}/reactions/{emoji}", add_reaction, methods=["PUT"]),
    Route("/api/messages/{message_id}/reactions/{emoji}", remove_reaction, methods=["DELETE"]),
    Route("/api/messages/{message_id}/receipts", get_receipts, methods=["GET"]),
    Route("/api/unread", get_unread, methods=["GET"]),
    Route("/api/search", search.search_messages, methods=["GET"]),
    Route("/api/messages_service/openapi.json", openapi_document, methods=["GET"]),
]
