"""Invitations: pending → accepted | declined | revoked | expired."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conversations_service.conftest import Api, Caller, EventLog, ServerStarter


async def _invite(api: Api, inviter: Caller, group: dict[str, Any], invitee: Caller) -> Any:
    return await api.call(
        inviter,
        "POST",
        f"/api/conversations/{group['id']}/invitations",
        json={"user_id": invitee.id},
    )


async def test_an_invitee_sees_the_invitation_live_and_listed_and_joins_by_accepting(
    api: Api, event_log: EventLog
) -> None:
    owner, invitee = api.person(), api.person()
    group = await api.group(owner, title="Book club")

    created = await _invite(api, owner, group, invitee)

    assert created.status_code == 201
    invitation = created.json()
    assert invitation["state"] == "pending"
    assert invitation["conversation_title"] == "Book club"
    [live] = await event_log.wait_for(
        lambda e: e.type == "invitation.created" and e.data["id"] == invitation["id"]
    )
    assert invitee.id in live.user_ids
    assert set(live.user_ids) == {invitee.id, owner.id}
    listed = await api.call(invitee, "GET", "/api/invitations")
    assert [i["id"] for i in listed.json()["items"]] == [invitation["id"]]
    assert (await api.call(owner, "GET", "/api/invitations")).json()["items"] == []
    pending = await api.call(owner, "GET", f"/api/conversations/{group['id']}/invitations")
    assert [i["id"] for i in pending.json()["items"]] == [invitation["id"]]

    accepted = await api.call(invitee, "POST", f"/api/invitations/{invitation['id']}/accept")
    retried = await api.call(invitee, "POST", f"/api/invitations/{invitation['id']}/accept")

    assert accepted.status_code == retried.status_code == 200
    assert accepted.json()["state"] == "accepted"
    assert (await api.members(group["id"]))[invitee.id] == "member"
    assert (await api.call(invitee, "GET", "/api/invitations")).json()["items"] == []
    added = await event_log.wait_for(
        lambda e: e.type == "member.added" and e.data["user_id"] == invitee.id
    )
    assert len(added) == 1  # the retry added nobody twice
    assert added[0].conversation_id == group["id"]
    await event_log.wait_for(
        lambda e: e.type == "invitation.accepted" and e.data["id"] == invitation["id"]
    )


async def test_a_declined_invitation_adds_nobody_and_cannot_be_accepted(api: Api) -> None:
    owner, invitee = api.person(), api.person()
    group = await api.group(owner)
    invitation = (await _invite(api, owner, group, invitee)).json()

    declined = await api.call(invitee, "POST", f"/api/invitations/{invitation['id']}/decline")
    accepted = await api.call(invitee, "POST", f"/api/invitations/{invitation['id']}/accept")

    assert declined.status_code == 200
    assert declined.json()["state"] == "declined"
    assert accepted.status_code == 409
    assert accepted.json()["code"] == "invitation_not_pending"
    assert invitee.id not in await api.members(group["id"])


async def test_the_inviter_or_a_manager_revokes_and_nobody_else_can(api: Api) -> None:
    owner, admin, member, invitee = api.person(), api.person(), api.person(), api.person()
    group = await api.group(owner, admin, member)
    await api.set_role(owner, group["id"], admin, "admin")
    invitation = (await _invite(api, admin, group, invitee)).json()
    revoke = f"/api/invitations/{invitation['id']}/revoke"

    by_member = await api.call(member, "POST", revoke)
    by_invitee = await api.call(invitee, "POST", revoke)
    by_owner = await api.call(owner, "POST", revoke)
    accepting = await api.call(invitee, "POST", f"/api/invitations/{invitation['id']}/accept")

    assert by_member.status_code == 404
    assert by_invitee.status_code == 403
    assert by_owner.status_code == 200
    assert by_owner.json()["state"] == "revoked"
    assert accepting.status_code == 409
    assert invitee.id not in await api.members(group["id"])


async def test_only_managers_invite_and_not_members_or_people_already_invited(api: Api) -> None:
    owner, member, invitee = api.person(), api.person(), api.person()
    group = await api.group(owner, member)

    by_member = await _invite(api, member, group, invitee)
    existing_member = await _invite(api, owner, group, member)
    first = await _invite(api, owner, group, invitee)
    again = await _invite(api, owner, group, invitee)
    unknown = await _invite(api, owner, group, api.person(known=False))

    assert by_member.status_code == 403
    assert existing_member.status_code == 409
    assert existing_member.json()["code"] == "already_member"
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["code"] == "invitation_pending"
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_user"


async def test_someone_elses_invitation_cannot_be_answered(api: Api) -> None:
    owner, invitee, intruder = api.person(), api.person(), api.person()
    group = await api.group(owner)
    invitation = (await _invite(api, owner, group, invitee)).json()

    for action in ("accept", "decline"):
        response = await api.call(intruder, "POST", f"/api/invitations/{invitation['id']}/{action}")
        assert response.status_code == 404
        assert response.json()["code"] == "invitation_not_found"
    assert intruder.id not in await api.members(group["id"])


async def test_an_expired_invitation_cannot_be_accepted_and_can_be_renewed(
    start_server: ServerStarter,
) -> None:
    async with start_server(INVITATION_LIFETIME_SECONDS="1") as api:
        owner, invitee = api.person(), api.person()
        group = await api.group(owner)
        invitation = (await _invite(api, owner, group, invitee)).json()
        await asyncio.sleep(1.1)

        accepting = await api.call(invitee, "POST", f"/api/invitations/{invitation['id']}/accept")
        listed = await api.call(invitee, "GET", "/api/invitations")
        renewed = await _invite(api, owner, group, invitee)

        assert accepting.status_code == 410
        assert accepting.json()["code"] == "invitation_expired"
        assert listed.json()["items"] == []
        assert invitee.id not in await api.members(group["id"])
        assert renewed.status_code == 201
