"""Every change is published after commit, addressed to the people concerned, with positions
that grow by one per change of a conversation."""

from __future__ import annotations

from tests.conversations_service.conftest import Api, EventLog


async def test_changes_are_published_in_order_to_the_people_concerned(
    api: Api, event_log: EventLog
) -> None:
    owner, member, newcomer = api.person(), api.person(), api.person()
    group = await api.group(owner, member)
    path = f"/api/conversations/{group['id']}"
    await api.call(owner, "PATCH", path, json={"title": "Renamed"})
    await api.call(owner, "POST", f"{path}/members", json={"user_id": newcomer.id})
    await api.set_role(owner, group["id"], newcomer, "admin")
    await api.call(owner, "DELETE", f"{path}/members/{member.id}")
    await api.call(owner, "DELETE", path)

    events = await event_log.wait_for(lambda e: e.conversation_id == group["id"], count=6)

    events.sort(key=lambda e: int(e.position or 0))
    assert [e.type for e in events] == [
        "conversation.created",
        "conversation.updated",
        "member.added",
        "member.updated",
        "member.removed",
        "conversation.deleted",
    ]
    assert [e.position for e in events] == [1, 2, 3, 4, 5, 6]
    created, updated, added, role, removed, deleted = events
    assert set(created.user_ids) == {owner.id, member.id}
    assert {m["user_id"] for m in created.data["members"]} == {owner.id, member.id}
    assert updated.data["title"] == "Renamed"
    assert added.data == {
        "conversation_id": group["id"],
        "user_id": newcomer.id,
        "role": "member",
        "added_by": owner.id,
    }
    assert set(added.user_ids) == {owner.id, member.id, newcomer.id}
    assert role.data["role"] == "admin"
    assert removed.data["user_id"] == member.id
    assert set(removed.user_ids) == {owner.id, member.id, newcomer.id}
    assert set(deleted.user_ids) == {owner.id, newcomer.id}


async def test_a_refused_change_publishes_nothing(api: Api, event_log: EventLog) -> None:
    owner, member = api.person(), api.person()
    group = await api.group(owner, member)

    refused = await api.call(
        member, "PATCH", f"/api/conversations/{group['id']}", json={"title": "Mine"}
    )
    await api.call(owner, "PATCH", f"/api/conversations/{group['id']}", json={"title": "Ours"})

    assert refused.status_code == 403
    events = await event_log.wait_for(lambda e: e.conversation_id == group["id"], count=2)
    assert [e.type for e in events] == ["conversation.created", "conversation.updated"]
    assert events[1].data["title"] == "Ours"
    assert events[1].position == 2
