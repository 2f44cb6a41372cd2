"""A non-member learns nothing about a conversation: every route answers exactly as it does for
a conversation that does not exist."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conversations_service.conftest import Api

MISSING = "0190f1c2-0000-7000-8000-000000000000"

ROUTES = [
    ("GET", "/api/conversations/{id}", None),
    ("PATCH", "/api/conversations/{id}", {"title": "Mine now"}),
    ("DELETE", "/api/conversations/{id}", None),
    ("GET", "/api/conversations/{id}/members", None),
    ("POST", "/api/conversations/{id}/members", {"user_id": "SELF"}),
    ("PATCH", "/api/conversations/{id}/members/OWNER", {"role": "member"}),
    ("DELETE", "/api/conversations/{id}/members/OWNER", None),
    ("DELETE", "/api/conversations/{id}/members/SELF", None),
    ("GET", "/api/conversations/{id}/invitations", None),
    ("POST", "/api/conversations/{id}/invitations", {"user_id": "SELF"}),
]


def _problem_without_instance(response: Any) -> dict[str, Any]:
    problem: dict[str, Any] = response.json()
    problem.pop("instance", None)
    return problem


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
async def test_a_non_member_gets_the_same_404_as_for_a_missing_conversation(
    api: Api, method: str, template: str, body: dict[str, str] | None
) -> None:
    owner, outsider = api.person(), api.person()
    group = await api.group(owner)

    def request_for(conversation_id: str) -> tuple[str, dict[str, str] | None]:
        path = template.format(id=conversation_id).replace("OWNER", owner.id)
        path = path.replace("SELF", outsider.id)
        payload = (
            None if body is None else {k: v.replace("SELF", outsider.id) for k, v in body.items()}
        )
        return path, payload

    answers = []
    for conversation_id in (group["id"], MISSING):
        path, payload = request_for(conversation_id)
        answers.append(await api.call(outsider, method, path, json=payload))

    existing, missing = answers
    assert existing.status_code == missing.status_code == 404
    assert existing.json()["code"] == "conversation_not_found"
    assert _problem_without_instance(existing) == _problem_without_instance(missing)
    assert await api.members(group["id"]) == {owner.id: "owner"}


async def test_lists_reveal_nothing_to_non_members(api: Api) -> None:
    owner, member, invitee, outsider = api.person(), api.person(), api.person(), api.person()
    group = await api.group(owner, member, title="Secret plans")
    await api.call(
        owner, "POST", f"/api/conversations/{group['id']}/invitations", json={"user_id": invitee.id}
    )

    conversations = await api.call(outsider, "GET", "/api/conversations")
    invitations = await api.call(outsider, "GET", "/api/invitations")

    assert conversations.json() == {"items": [], "next_cursor": None}
    assert invitations.json() == {"items": [], "next_cursor": None}
    assert "Secret plans" not in conversations.text + invitations.text


async def test_a_removed_member_loses_access(api: Api) -> None:
    owner, member = api.person(), api.person()
    group = await api.group(owner, member)
    await api.call(owner, "DELETE", f"/api/conversations/{group['id']}/members/{member.id}")

    response = await api.call(member, "GET", f"/api/conversations/{group['id']}/members")

    assert response.status_code == 404


async def test_invalid_ids_in_paths_are_not_found(api: Api) -> None:
    me = api.person()

    conversation = await api.call(me, "GET", "/api/conversations/not-a-uuid")
    invitation = await api.call(me, "POST", "/api/invitations/not-a-uuid/accept")

    assert conversation.status_code == invitation.status_code == 404
    assert conversation.json()["code"] == "conversation_not_found"
    assert invitation.json()["code"] == "invitation_not_found"
