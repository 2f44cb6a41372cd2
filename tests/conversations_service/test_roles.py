"""Who may add, remove and re-role whom in a group; anyone may leave, except the last owner."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conversations_service.conftest import Api, Caller


async def _team(api: Api) -> tuple[dict[str, Any], dict[str, Caller]]:
    """A group with two owners, two admins and two members."""
    people = {
        name: api.person() for name in ("owner", "owner2", "admin", "admin2", "member", "member2")
    }
    group = await api.group(people["owner"], *(p for n, p in people.items() if n != "owner"))
    for name, role in (("owner2", "owner"), ("admin", "admin"), ("admin2", "admin")):
        assert (
            await api.set_role(people["owner"], group["id"], people[name], role)
        ).status_code == 200
    return group, people


@pytest.mark.parametrize(
    ("actor", "target", "role", "status"),
    [
        ("owner", "member", "admin", 200),
        ("owner", "member", "owner", 200),
        ("owner", "owner2", "member", 200),
        ("owner", "admin", "member", 200),
        ("admin", "member", "admin", 200),
        ("admin", "admin2", "member", 200),
        ("admin", "admin", "member", 200),  # stepping down
        ("admin", "member", "owner", 403),
        ("admin", "owner", "admin", 403),
        ("admin", "owner2", "member", 403),
        ("member", "member2", "admin", 403),
        ("member", "member", "admin", 403),
        ("member", "admin", "member", 403),
    ],
)
async def test_role_changes(api: Api, actor: str, target: str, role: str, status: int) -> None:
    group, people = await _team(api)

    response = await api.set_role(people[actor], group["id"], people[target], role)

    assert response.status_code == status, response.text
    roles = await api.members(group["id"])
    if status == 200:
        assert response.json()["role"] == role
        assert roles[people[target].id] == role
    else:
        assert response.json()["code"] == "insufficient_role"
        assert roles[people[target].id] != role


@pytest.mark.parametrize(
    ("actor", "target", "status"),
    [
        ("owner", "owner2", 204),
        ("owner", "admin", 204),
        ("owner", "member", 204),
        ("admin", "admin2", 204),
        ("admin", "member", 204),
        ("admin", "owner", 403),
        ("member", "member2", 403),
        ("member", "admin", 403),
        ("member", "member", 204),  # leaving
        ("admin", "admin", 204),
        ("owner", "owner", 204),  # another owner remains
    ],
)
async def test_removals(api: Api, actor: str, target: str, status: int) -> None:
    group, people = await _team(api)

    response = await api.call(
        people[actor], "DELETE", f"/api/conversations/{group['id']}/members/{people[target].id}"
    )

    assert response.status_code == status, response.text
    assert (people[target].id in await api.members(group["id"])) == (status != 204)


@pytest.mark.parametrize(
    ("actor", "role", "status"),
    [
        ("owner", "owner", 201),
        ("owner", "admin", 201),
        ("admin", "admin", 201),
        ("admin", "member", 201),
        ("admin", "owner", 403),
        ("member", "member", 403),
    ],
)
async def test_adding_members(api: Api, actor: str, role: str, status: int) -> None:
    group, people = await _team(api)
    newcomer = api.person()

    response = await api.call(
        people[actor],
        "POST",
        f"/api/conversations/{group['id']}/members",
        json={"user_id": newcomer.id, "role": role},
    )

    assert response.status_code == status, response.text
    assert (await api.members(group["id"])).get(newcomer.id) == (role if status == 201 else None)


async def test_adding_an_existing_member_is_a_conflict(api: Api) -> None:
    owner, member = api.person(), api.person()
    group = await api.group(owner, member)

    response = await api.call(
        owner, "POST", f"/api/conversations/{group['id']}/members", json={"user_id": member.id}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_member"


async def test_the_last_owner_can_neither_leave_nor_step_down_until_someone_else_owns(
    api: Api,
) -> None:
    owner, member = api.person(), api.person()
    group = await api.group(owner, member)
    leave = f"/api/conversations/{group['id']}/members/{owner.id}"

    leaving = await api.call(owner, "DELETE", leave)
    stepping_down = await api.set_role(owner, group["id"], owner, "admin")

    assert leaving.status_code == stepping_down.status_code == 409
    assert leaving.json()["code"] == stepping_down.json()["code"] == "last_owner"
    assert (await api.members(group["id"]))[owner.id] == "owner"

    assert (await api.set_role(owner, group["id"], member, "owner")).status_code == 200
    assert (await api.call(owner, "DELETE", leave)).status_code == 204
    assert await api.members(group["id"]) == {member.id: "owner"}


async def test_changing_or_removing_a_non_member_is_not_found(api: Api) -> None:
    owner, outsider = api.person(), api.person()
    group = await api.group(owner)

    changed = await api.set_role(owner, group["id"], outsider, "admin")
    removed = await api.call(
        owner, "DELETE", f"/api/conversations/{group['id']}/members/{outsider.id}"
    )

    assert changed.status_code == removed.status_code == 404
    assert changed.json()["code"] == "member_not_found"


async def test_members_are_listed_page_by_page(api: Api) -> None:
    owner = api.person()
    others = [api.person() for _ in range(4)]
    group = await api.group(owner, *others)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await api.call(
            others[0], "GET", f"/api/conversations/{group['id']}/members", params=params
        )
        assert response.status_code == 200
        seen.extend(m["user_id"] for m in response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted([owner.id, *(o.id for o in others)])
