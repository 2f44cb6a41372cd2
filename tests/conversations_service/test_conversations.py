"""Creating, reading, listing, changing and deleting conversations."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conversations_service.conftest import Api, ServerStarter


async def test_a_group_has_its_creator_as_owner_and_the_others_as_members(api: Api) -> None:
    owner, member = api.person(), api.person()

    group = await api.group(owner, member, title="  Launch  ")

    assert group["kind"] == "group"
    assert group["title"] == "Launch"
    assert group["my_role"] == "owner"
    assert group["last_seq"] is None
    assert {(m["user_id"], m["role"]) for m in group["members"]} == {
        (owner.id, "owner"),
        (member.id, "member"),
    }
    seen_by_member = await api.call(member, "GET", f"/api/conversations/{group['id']}")
    assert seen_by_member.status_code == 200
    assert seen_by_member.json()["my_role"] == "member"


async def test_a_direct_conversation_is_created_once_per_pair(api: Api) -> None:
    alice, bob = api.person(), api.person()

    first = await api.direct(alice, bob)
    again = await api.direct(bob, alice)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert {m["user_id"] for m in first.json()["members"]} == {alice.id, bob.id}
    assert {m["role"] for m in first.json()["members"]} == {"member"}


async def test_concurrent_direct_creation_from_both_sides_yields_one_conversation(
    api: Api,
) -> None:
    alice, bob = api.person(), api.person()
    for caller in (alice, bob):  # known to the service before the race, as after any call
        await api.call(caller, "GET", "/api/invitations")

    responses = await asyncio.gather(
        *(api.direct(*((alice, bob) if i % 2 else (bob, alice))) for i in range(20))
    )

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    ids = await api.call(api.service(), "GET", f"/internal/users/{alice.id}/conversations")
    assert ids.json()["conversation_ids"] == [responses[0].json()["id"]]


async def test_a_direct_conversation_cannot_be_changed(api: Api) -> None:
    alice, bob, carol = api.person(), api.person(), api.person()
    direct = (await api.direct(alice, bob)).json()
    path = f"/api/conversations/{direct['id']}"

    attempts = [
        await api.call(alice, "PATCH", path, json={"title": "Ours"}),
        await api.call(alice, "DELETE", path),
        await api.call(alice, "POST", f"{path}/members", json={"user_id": carol.id}),
        await api.call(alice, "POST", f"{path}/invitations", json={"user_id": carol.id}),
        await api.call(alice, "DELETE", f"{path}/members/{alice.id}"),
        await api.set_role(alice, direct["id"], bob, "admin"),
    ]

    assert [r.status_code for r in attempts] == [409] * 5 + [409]
    assert {r.json()["code"] for r in attempts} == {"direct_conversation_immutable"}
    assert await api.members(direct["id"]) == {alice.id: "member", bob.id: "member"}


def _direct(member_ids: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": "direct", "member_ids": member_ids, **extra}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"kind": "channel", "title": "x"}, "kind", id="bad-kind"),
        pytest.param({"title": "x"}, "kind", id="missing-kind"),
        pytest.param({"kind": "group"}, "title", id="group-without-title"),
        pytest.param({"kind": "group", "title": "x" * 201}, "title", id="title-too-long"),
        pytest.param({"kind": "group", "title": "   "}, "title", id="blank-title"),
        pytest.param({"kind": "group", "title": "a\nb"}, "title", id="multi-line-title"),
        pytest.param({"kind": "group", "title": 7}, "title", id="title-not-a-string"),
        pytest.param(
            {"kind": "group", "title": "x", "description": "y" * 2001}, "description", id="long"
        ),
        pytest.param({"kind": "group", "title": "x", "colour": "red"}, "colour", id="unknown"),
        pytest.param({"kind": "group", "title": "x", "member_ids": "a"}, "member_ids", id="type"),
        pytest.param({"kind": "group", "title": "x", "member_ids": [""]}, "member_ids[0]", id="e"),
        pytest.param({"kind": "direct"}, "member_ids", id="direct-without-anyone"),
        pytest.param(_direct([]), "member_ids", id="direct-with-nobody"),
        pytest.param(_direct(["SELF"]), "member_ids", id="direct-with-yourself"),
        pytest.param(_direct(["A", "B"]), "member_ids", id="direct-with-two-others"),
        pytest.param(_direct(["A"], title="x"), "title", id="direct-with-title"),
        pytest.param(_direct(["A", "A"]), "member_ids", id="duplicate-members"),
        pytest.param(
            {"kind": "group", "title": "x", "member_ids": ["SELF"]}, "member_ids", id="self"
        ),
    ],
)
async def test_invalid_conversations_are_refused_with_the_field_named(
    api: Api, body: dict[str, Any], field: str
) -> None:
    me, a, b = api.person(), api.person(), api.person()
    replacements = {"SELF": me.id, "A": a.id, "B": b.id}
    if "member_ids" in body and isinstance(body["member_ids"], list):
        body = {**body, "member_ids": [replacements.get(i, i) for i in body["member_ids"]]}

    response = await api.call(me, "POST", "/api/conversations", json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_failed"
    assert field in {error["field"] for error in response.json()["errors"]}
    listing = await api.call(me, "GET", "/api/conversations")
    assert listing.json()["items"] == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"[1, 2]", "application/json", 400, "malformed_json"),
        (b'{"kind": "group", "title": "x"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_bodies_are_refused(
    api: Api, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = await api.http.post(
        "/api/conversations",
        content=content,
        headers={**api.person().headers, "Content-Type": content_type},
    )

    assert response.status_code == status
    assert response.json()["code"] == code


async def test_unknown_user_ids_are_refused_and_named(api: Api) -> None:
    me, known = api.person(), api.person()
    stranger = api.person(known=False)
    unseen_bot = api.bot()

    response = await api.call(
        me,
        "POST",
        "/api/conversations",
        json={"kind": "group", "title": "x", "member_ids": [known.id, stranger.id, unseen_bot.id]},
    )

    assert response.status_code == 422
    assert response.json()["code"] == "unknown_user"
    assert sorted(response.json()["unknown_user_ids"]) == sorted([stranger.id, unseen_bot.id])


async def test_the_directory_is_asked_with_a_service_token_and_only_once(api: Api) -> None:
    me, other = api.person(), api.person()

    await api.group(me, other)
    await api.group(me, other)

    assert api.people.lookups.count(other.id) == 1
    assert me.id not in api.people.lookups  # known from calling the API
    authorization = api.people.authorizations[api.people.lookups.index(other.id)]
    assert authorization is not None
    assert authorization.startswith("Bearer ")
    assert any(
        request.form.get("scope") == "parley.internal" for request in api.issuer.token_requests
    )


async def test_without_a_directory_people_are_known_once_they_have_called(
    start_server: ServerStarter,
) -> None:
    # Production, where IDENTITY_URL is optional (an external provider has no directory).
    async with start_server(PARLEY_ENV="production", IDENTITY_URL="") as api:
        me, newcomer = api.person(), api.person()
        body = {"kind": "group", "title": "x", "member_ids": [newcomer.id]}

        before = await api.call(me, "POST", "/api/conversations", json=body)
        await api.call(newcomer, "GET", "/api/conversations")
        after = await api.call(me, "POST", "/api/conversations", json=body)

        assert before.status_code == 422
        assert before.json()["unknown_user_ids"] == [newcomer.id]
        assert after.status_code == 201
        assert api.people.lookups == []


async def test_owners_and_admins_rename_and_describe_a_group(api: Api) -> None:
    owner, admin, member = api.person(), api.person(), api.person()
    group = await api.group(owner, admin, member)
    await api.set_role(owner, group["id"], admin, "admin")
    path = f"/api/conversations/{group['id']}"

    renamed = await api.call(admin, "PATCH", path, json={"title": "New", "description": "a\nb"})
    refused = await api.call(member, "PATCH", path, json={"title": "Mine"})
    cleared = await api.call(owner, "PATCH", path, json={"description": None})
    empty = await api.call(owner, "PATCH", path, json={})

    assert renamed.status_code == 200
    assert (renamed.json()["title"], renamed.json()["description"]) == ("New", "a\nb")
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_role"
    assert cleared.json()["description"] is None
    assert cleared.json()["title"] == "New"
    assert empty.status_code == 422


async def test_only_owners_delete_a_group_and_then_it_is_gone(api: Api) -> None:
    owner, admin = api.person(), api.person()
    group = await api.group(owner, admin)
    await api.set_role(owner, group["id"], admin, "admin")
    path = f"/api/conversations/{group['id']}"

    refused = await api.call(admin, "DELETE", path)
    deleted = await api.call(owner, "DELETE", path)

    assert refused.status_code == 403
    assert deleted.status_code == 204
    for caller in (owner, admin):
        gone = await api.call(caller, "GET", path)
        assert gone.status_code == 404
        assert gone.json()["code"] == "conversation_not_found"
        listing = await api.call(caller, "GET", "/api/conversations")
        assert listing.json()["items"] == []


async def _report_activity(api: Api, conversation_id: str, seq: int, second: int) -> None:
    response = await api.call(
        api.service(),
        "POST",
        "/internal/activity",
        json={
            "items": [
                {
                    "conversation_id": conversation_id,
                    "last_seq": seq,
                    "last_message_at": f"2099-01-01T00:00:{second:02d}+00:00",
                }
            ]
        },
    )
    assert response.status_code == 204


async def test_the_list_is_paginated_by_most_recent_activity(api: Api) -> None:
    me = api.person()
    groups = [await api.group(me, title=f"Group {i}") for i in range(5)]
    # Activity order 2, 0, 4, 1, 3 (newest first); messages_service reports it.
    for second, index in enumerate([3, 1, 4, 0, 2]):
        await _report_activity(api, groups[index]["id"], seq=second + 1, second=second + 10)

    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await api.call(me, "GET", "/api/conversations", params=params)
        assert response.status_code == 200
        seen.extend(response.json()["items"])
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert [c["title"] for c in seen] == ["Group 2", "Group 0", "Group 4", "Group 1", "Group 3"]
    assert all(c["my_role"] == "owner" and c["members"] for c in seen)
    assert seen[0]["last_seq"] == 5


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"cursor": "!!"}, {"cursor": "e30"}],
)
async def test_bad_paging_parameters_are_refused(api: Api, params: dict[str, str]) -> None:
    response = await api.call(api.person(), "GET", "/api/conversations", params=params)

    assert response.status_code == 422


async def test_the_openapi_document_describes_every_public_route(api: Api) -> None:
    response = await api.http.get("/api/conversations_service/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/conversations",
        "/api/conversations/{conversation_id}",
        "/api/conversations/{conversation_id}/members",
        "/api/conversations/{conversation_id}/members/{user_id}",
        "/api/conversations/{conversation_id}/invitations",
        "/api/invitations",
        "/api/invitations/{invitation_id}/accept",
        "/api/invitations/{invitation_id}/decline",
        "/api/invitations/{invitation_id}/revoke",
    }
