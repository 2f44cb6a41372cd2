"""The internal API for Parley's other services (``servicekit.internal``): membership checks
for messages_service and realtime_service, and activity reports from messages_service.

    GET  /internal/conversations/{id}/members[?user_id=…&user_id=…]
         200 {"conversation_id", "kind", "members": [{"user_id", "role"}, …]} by user id;
         with user_id filters, only those of them who are members. 404 conversation_not_found.
    GET  /internal/users/{user_id}/conversations
         200 {"conversation_ids": […]} every live conversation of that user or machine.
    POST /internal/activity  {"items": [{"conversation_id", "last_seq", "last_message_at"}]}
         204; moves each conversation's activity forward only; unknown ids are ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conversations_service.service import MAX_GROUP_MEMBERS
from conversations_service.state import conversations_state
from conversations_service.store import ActivityReport
from servicekit.errors import ValidationFailed
from servicekit.internal import require_internal_caller
from servicekit.requests import Fields, identifier_problem, path_uuid, read_json_object

MAX_ACTIVITY_ITEMS: Final = 500
MAX_SEQ: Final = 2**63 - 1  # bigint


async def _require_service(request: Request) -> None:
    principal = await conversations_state(request).authentication.principal(request)
    require_internal_caller(principal)


async def conversation_members(request: Request) -> Response:
    await _require_service(request)
    conversation_id = path_uuid(request, "conversation_id", what="conversation")
    user_ids = request.query_params.getlist("user_id")
    if len(user_ids) > MAX_GROUP_MEMBERS:
        raise ValidationFailed(
            "Too many user_id filters.",
            errors=[{"field": "user_id", "message": f"At most {MAX_GROUP_MEMBERS}."}],
        )
    problems = [
        {"field": "user_id", "message": f"{problem} ({index})"}
        for index, user_id in enumerate(user_ids)
        if (problem := identifier_problem(user_id)) is not None
    ]
    if problems:
        raise ValidationFailed("The user_id filter is not valid.", errors=problems)
    view = await conversations_state(request).conversations.members_for_service(
        conversation_id, sorted(set(user_ids)) if user_ids else None
    )
    return JSONResponse(view)


async def user_conversations(request: Request) -> Response:
    await _require_service(request)
    user_id = request.path_params["user_id"]
    problem = identifier_problem(user_id)
    if problem is not None:
        raise ValidationFailed(
            "The user id is not valid.", errors=[{"field": "user_id", "message": problem}]
        )
    ids = await conversations_state(request).conversations.conversation_ids_of(user_id)
    return JSONResponse({"conversation_ids": ids})


async def record_activity(request: Request) -> Response:
    await _require_service(request)
    fields = Fields(await read_json_object(request), allowed={"items"})
    items = fields.body.get("items")
    reports: list[ActivityReport] = []
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ACTIVITY_ITEMS:
        fields.add_error("items", f"A list of 1 to {MAX_ACTIVITY_ITEMS} objects.")
        items = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            fields.add_error(f"items[{index}]", "Must be an object.")
            continue
        report = _activity_report(item, index, fields)
        if report is not None:
            reports.append(report)
    fields.finish()
    await conversations_state(request).conversations.record_activity(reports)
    return Response(status_code=204)


def _activity_report(item: dict[str, object], index: int, fields: Fields) -> ActivityReport | None:
    """One item of an activity report; its problems are added to ``fields`` as items[index]."""
    item_fields = Fields(item, allowed={"conversation_id", "last_seq", "last_message_at"})
    conversation_id = item_fields.uuid("conversation_id", required=True)
    last_seq = item_fields.integer("last_seq", required=True, minimum=1, maximum=MAX_SEQ)
    raw_moment = item_fields.text("last_message_at", required=True, max_length=64)
    moment = None
    if raw_moment is not None:
        try:
            moment = datetime.fromisoformat(raw_moment)
        except ValueError:
            moment = None
        if moment is None or moment.utcoffset() is None:
            item_fields.add_error("last_message_at", "An ISO-8601 time with a UTC offset.")
            moment = None
    for error in item_fields.errors:
        fields.add_error(f"items[{index}].{error['field']}", error["message"])
    if conversation_id is None or last_seq is None or moment is None:
        return None
    return ActivityReport(conversation_id, last_seq, moment)
