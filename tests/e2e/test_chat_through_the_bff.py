"""Two people chat through the BFF: every service is real and every hop real HTTP.

Alice and Bob sign in at identity_service with their seeded passwords; Alice finds Bob in the
directory, opens a direct conversation and writes; Bob sees the conversation first in his list,
an unread message, reads it, and his unread count drops to nothing. Carol, who is not in the
conversation, learns nothing about it. A bot joins a group and writes with its own token.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.bff.conftest import Browser, open_browser
from tests.e2e.conftest import Stack
from tests.e2e.journeys import demo_person, sign_in
from tests.identity_service.support import RegisteredClient, client_credentials

pytestmark = pytest.mark.slow

CSRF = {"X-CSRF": "1"}


@pytest.fixture(scope="module")
async def people(stack: Stack) -> AsyncIterator[dict[str, Browser]]:
    """Alice, Bob and Carol, each signed in in a browser of their own."""
    browsers: dict[str, Browser] = {}
    contexts = []
    try:
        for name in ("Alice", "Bob", "Carol"):
            context = open_browser(stack.bff)
            browser = await context.__aenter__()
            contexts.append(context)
            callback = await sign_in(browser, stack, demo_person(stack, name))
            assert callback.status_code == 302, callback.text
            browsers[name] = browser
        yield browsers
    finally:
        for context in reversed(contexts):
            await context.__aexit__(None, None, None)


async def user_id(browser: Browser) -> str:
    user = await browser.user()
    assert user.status_code == 200, user.text
    return str(user.json()["claims"]["sub"])


async def api(browser: Browser, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await browser.http.request(method, path, headers=CSRF, **kwargs)


async def send(browser: Browser, conversation_id: str, body: str) -> dict[str, Any]:
    sent = await api(
        browser,
        "POST",
        f"/api/conversations/{conversation_id}/messages",
        json={"body": body, "client_msg_id": uuid.uuid4().hex},
    )
    assert sent.status_code == 201, sent.text
    message: dict[str, Any] = sent.json()
    return message


async def test_alice_and_bob_chat_and_carol_sees_nothing(people: dict[str, Browser]) -> None:
    alice, bob, carol = people["Alice"], people["Bob"], people["Carol"]
    found = await api(alice, "GET", "/api/users", params={"q": "bob"})
    assert found.status_code == 200, found.text
    bob_id = found.json()["items"][0]["id"]
    assert bob_id == await user_id(bob)

    created = await api(
        alice, "POST", "/api/conversations", json={"kind": "direct", "member_ids": [bob_id]}
    )
    assert created.status_code in (200, 201), created.text
    conversation_id = created.json()["id"]
    first = await send(alice, conversation_id, "Hello **Bob**")
    second = await send(alice, conversation_id, "Are you there?")
    assert second["seq"] == first["seq"] + 1

    listed = await api(bob, "GET", "/api/conversations")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["id"] == conversation_id
    unread = await api(bob, "GET", "/api/unread")
    assert unread.status_code == 200, unread.text
    counts = {item["conversation_id"]: item["unread"] for item in unread.json()["items"]}
    assert counts[conversation_id] == 2

    history = await api(bob, "GET", f"/api/conversations/{conversation_id}/messages")
    assert history.status_code == 200, history.text
    assert [m["body"] for m in history.json()["items"]] == ["Are you there?", "Hello **Bob**"]
    read = await api(
        bob, "POST", f"/api/conversations/{conversation_id}/read", json={"seq": second["seq"]}
    )
    assert read.status_code in (200, 204), read.text
    unread = await api(bob, "GET", "/api/unread")
    assert conversation_id not in {item["conversation_id"] for item in unread.json()["items"]}

    for path in (
        f"/api/conversations/{conversation_id}",
        f"/api/conversations/{conversation_id}/members",
        f"/api/conversations/{conversation_id}/messages",
    ):
        outsider = await api(carol, "GET", path)
        assert outsider.status_code == 404, (path, outsider.text)
    mine = await api(carol, "GET", "/api/conversations")
    assert conversation_id not in {item["id"] for item in mine.json()["items"]}
    searched = await api(carol, "GET", "/api/search", params={"q": "Bob"})
    assert searched.status_code == 200, searched.text
    assert searched.json()["items"] == []


async def test_a_bot_added_to_a_group_writes_with_its_own_token(
    stack: Stack, people: dict[str, Browser]
) -> None:
    alice = people["Alice"]
    bot = RegisteredClient(stack.demo.bot_id, stack.demo.bot_secret)
    async with httpx.AsyncClient(base_url=stack.bff.url, timeout=10.0) as machine:
        token = await client_credentials(machine, stack.identity, bot)
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        # A bot becomes known to conversations_service when it first calls the API.
        assert (await machine.get("/api/conversations", headers=bearer)).status_code == 200

        group = await api(
            alice,
            "POST",
            "/api/conversations",
            json={"kind": "group", "title": "Release train", "member_ids": []},
        )
        assert group.status_code == 201, group.text
        conversation_id = group.json()["id"]
        added = await api(
            alice,
            "POST",
            f"/api/conversations/{conversation_id}/members",
            json={"user_id": f"machine:{stack.demo.bot_id}"},
        )
        assert added.status_code == 201, added.text

        posted = await machine.post(
            f"/api/conversations/{conversation_id}/messages",
            json={"body": "Build 42 is green", "client_msg_id": "build-42"},
            headers=bearer,
        )
        assert posted.status_code == 201, posted.text

    history = await api(alice, "GET", f"/api/conversations/{conversation_id}/messages")
    assert [(m["sender"], m["body"]) for m in history.json()["items"]] == [
        (f"machine:{stack.demo.bot_id}", "Build 42 is green")
    ]
