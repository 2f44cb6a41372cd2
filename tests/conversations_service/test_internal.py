"""The internal API: only Parley's services may call it, and it answers membership questions
and takes activity reports."""

from __future__ import annotations

import pytest

from tests.conversations_service.conftest import Api


async def test_members_endpoint_lists_every_member_with_role_sorted_by_id(api: Api) -> None:
    owner, first, second = api.person(), api.person(), api.person()
    group = await api.group(owner, first, second)

    response = await api.call(
        api.service(), "GET", f"/internal/conversations/{group['id']}/members"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["conversation_id"] == group["id"]
    assert body["kind"] == "group"
    expected = sorted([(owner.id, "owner"), (first.id, "member"), (second.id, "member")])
    assert [(m["user_id"], m["role"]) for m in body["members"]] == expected


async def test_members_endpoint_filters_to_the_users_asked_about(api: Api) -> None:
    owner, member = api.person(), api.person()
    stranger = api.person()
    group = await api.group(owner, member)

    response = await api.call(
        api.service(),
        "GET",
        f"/internal/conversations/{group['id']}/members",
        params=[("user_id", member.id), ("user_id", stranger.id)],
    )

    assert response.status_code == 200
    assert response.json()["members"] == [{"user_id": member.id, "role": "member"}]


@pytest.mark.parametrize(
    "path",
    [
        "/internal/conversations/0190f1c2-0000-7000-8000-000000000000/members",
        "/internal/conversations/not-a-uuid/members",
    ],
)
async def test_members_endpoint_answers_404_for_unknown_conversations(api: Api, path: str) -> None:
    response = await api.call(api.service(), "GET", path)

    assert response.status_code == 404
    assert response.json()["code"] == "conversation_not_found"


async def test_user_conversations_lists_live_conversations_of_users_and_bots(api: Api) -> None:
    owner, member = api.person(), api.person()
    bot = api.bot()
    assert (await api.call(bot, "GET", "/api/conversations")).status_code == 200
    first = await api.group(owner, member, bot)
    second = await api.group(member, owner)
    deleted = await api.group(owner, bot)
    response = await api.call(owner, "DELETE", f"/api/conversations/{deleted['id']}")
    assert response.status_code == 204

    for principal, expected in ((owner, {first["id"], second["id"]}), (bot, {first["id"]})):
        answer = await api.call(
            api.service(), "GET", f"/internal/users/{principal.id}/conversations"
        )
        assert answer.status_code == 200
        assert set(answer.json()["conversation_ids"]) == expected


async def test_deleted_conversations_are_not_found_internally(api: Api) -> None:
    owner = api.person()
    group = await api.group(owner)
    await api.call(owner, "DELETE", f"/api/conversations/{group['id']}")

    response = await api.call(
        api.service(), "GET", f"/internal/conversations/{group['id']}/members"
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/internal/conversations/0190f1c2-0000-7000-8000-000000000000/members"),
        ("GET", "/internal/users/someone/conversations"),
        ("POST", "/internal/activity"),
    ],
)
async def test_internal_endpoints_refuse_everyone_but_services(
    api: Api, method: str, path: str
) -> None:
    body = {"items": []}
    anonymous = await api.call(None, method, path, json=body)
    assert anonymous.status_code == 401

    for caller in (api.person(), api.bot("chat.read chat.write")):
        refused = await api.call(caller, method, path, json=body)
        assert refused.status_code == 403
        assert refused.json()["code"] == "internal_only"

    forged = api.issuer.access_token(sub="machine-looking", scope="parley.internal")
    refused = await api.http.request(
        method, path, headers={"Authorization": f"Bearer {forged}"}, json=body
    )
    assert refused.status_code == 403


async def test_activity_moves_forward_only_and_ignores_unknown_conversations(api: Api) -> None:
    owner = api.person()
    group = await api.group(owner)

    async def report(seq: int, moment: str) -> None:
        response = await api.call(
            api.service(),
            "POST",
            "/internal/activity",
            json={
                "items": [
                    {"conversation_id": group["id"], "last_seq": seq, "last_message_at": moment},
                    {
                        "conversation_id": "0190f1c2-0000-7000-8000-000000000000",
                        "last_seq": 3,
                        "last_message_at": moment,
                    },
                ]
            },
        )
        assert response.status_code == 204, response.text

    await report(5, "2099-01-01T00:00:05Z")
    await report(5, "2099-01-01T00:00:05Z")  # a retry changes nothing
    await report(3, "2099-01-01T00:00:03Z")  # late news is not news

    response = await api.call(owner, "GET", f"/api/conversations/{group['id']}")
    assert response.json()["last_seq"] == 5
    assert response.json()["last_activity_at"] == "2099-01-01T00:00:05.000000Z"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {
            "items": [
                {
                    "conversation_id": "nope",
                    "last_seq": 1,
                    "last_message_at": "2025-01-01T00:00:00Z",
                }
            ]
        },
        {
            "items": [
                {
                    "conversation_id": "0190f1c2-0000-7000-8000-000000000000",
                    "last_seq": 0,
                    "last_message_at": "2025-01-01T00:00:00Z",
                }
            ]
        },
        {
            "items": [
                {
                    "conversation_id": "0190f1c2-0000-7000-8000-000000000000",
                    "last_seq": 1,
                    "last_message_at": "yesterday",
                }
            ]
        },
        {
            "items": [
                {
                    "conversation_id": "0190f1c2-0000-7000-8000-000000000000",
                    "last_seq": 1,
                    "last_message_at": "2025-01-01T00:00:00",
                }
            ]
        },
        {"items": [1]},
    ],
)
async def test_malformed_activity_reports_are_refused(api: Api, body: object) -> None:
    response = await api.call(api.service(), "POST", "/internal/activity", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
