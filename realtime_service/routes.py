"""The WebSocket that live events flow over.

A connection is authenticated once, at the handshake, by the bearer access token in its
``Authorization`` header: the BFF presents the signed-in user's token when it relays a browser's
socket, and machine clients present their own. A handshake without a valid token is refused
before it is accepted (HTTP 403), so an unauthenticated peer never holds an open socket.

Frames are JSON text objects with a ``type``; the events themselves are described in BRIEF §6.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from servicekit.authentication import BearerAuthentication
from servicekit.errors import ParleyError

logger = logging.getLogger("realtime_service.connection")

POLICY_VIOLATION: Final = 1008  # RFC 6455 close code: the peer broke a rule it was told


def error_frame(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "data": {"code": code, "detail": detail}}


async def realtime_connection(websocket: WebSocket) -> None:
    authentication: BearerAuthentication = websocket.app.state.authentication
    try:
        principal = await authentication.principal(websocket)
    except ParleyError as error:
        logger.info("websocket refused", extra={"code": error.instance_code})
        await websocket.close(code=POLICY_VIOLATION)
        return
    await websocket.accept()
    logger.info("websocket opened", extra={"principal": principal.id})
    try:
        while True:
            raw = await websocket.receive_text()
            await websocket.send_json(answer_to(raw))
    except WebSocketDisconnect:
        logger.info("websocket closed", extra={"principal": principal.id})


def answer_to(raw: str) -> dict[str, Any]:
    """The server's reply to one client frame."""
    try:
        frame = json.loads(raw)
    except json.JSONDecodeError:
        return error_frame("invalid_frame", "frames are JSON objects")
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return error_frame("invalid_frame", "frames are JSON objects with a string `type`")
    if frame["type"] == "ping":
        return {"type": "pong"}
    return error_frame("unsupported_type", "this server does not handle that frame type")


ROUTES: list[BaseRoute] = [WebSocketRoute("/ws", realtime_connection)]
