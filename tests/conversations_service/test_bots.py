"""Machine clients are members like people, acting only within their token's scopes."""

from __future__ import annotations

from tests.conversations_service.conftest import Api


async def test_a_bot_that_has_called_can_be_added_and_reads_with_chat_read(api: Api) -> None:
    owner = api.person()
    bot = api.bot()
    assert (await api.call(bot, "GET", "/api/conversations")).status_code == 200

    group = await api.group(owner, bot)
    listing = await api.call(bot, "GET", "/api/conversations")

    assert [c["id"] for c in listing.json()["items"]] == [group["id"]]
    assert listing.json()["items"][0]["my_role"] == "member"
    assert (await api.members(group["id"]))[bot.id] == "member"


async def test_a_bot_without_chat_write_cannot_change_anything(api: Api) -> None:
    owner = api.person()
    reader = api.bot("chat.read")
    await api.call(reader, "GET", "/api/conversations")
    group = await api.group(owner, reader)

    reading = await api.call(reader, "GET", f"/api/conversations/{group['id']}")
    leaving = await api.call(
        reader, "DELETE", f"/api/conversations/{group['id']}/members/{reader.id}"
    )
    creating = await api.call(
        reader, "POST", "/api/conversations", json={"kind": "group", "title": "Bots"}
    )

    assert reading.status_code == 200
    assert leaving.status_code == creating.status_code == 403
    assert leaving.json()["code"] == "insufficient_scope"
    assert reader.id in await api.members(group["id"])


async def test_a_bot_without_chat_read_cannot_read(api: Api) -> None:
    writer = api.bot("chat.write")

    response = await api.call(writer, "GET", "/api/conversations")

    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


async def test_a_bot_with_chat_write_creates_a_group_it_owns(api: Api) -> None:
    bot, person = api.bot(), api.person()

    group = await api.group(bot, person)

    assert group["my_role"] == "owner"
    assert (await api.members(group["id"])) == {bot.id: "owner", person.id: "member"}
