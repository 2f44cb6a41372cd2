"""Logging out, from the browser (RP-initiated) and from the provider (back-channel)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as redis

from bff.sessions import SESSION_ENDED_TOPIC
from servicekit.events import Event, EventBus
from tests.bff.conftest import Browser, RunningBff, isolated_bff, open_browser
from tests.bff.scripted_provider import (
    BACKCHANNEL_LOGOUT_EVENT,
    CLIENT_ID,
    Forgery,
    ScriptedProvider,
)


async def logout_url(browser: Browser) -> str:
    return str((await browser.user()).json()["logout_url"])


async def test_logout_ends_the_session_revokes_and_goes_through_the_provider(
    browser: Browser, provider: ScriptedProvider
) -> None:
    await browser.sign_in()
    refresh_token = next(iter(provider.refresh_tokens))
    captured = browser.session_cookie()

    logout = await browser.http.get(await logout_url(browser))

    assert logout.status_code == 303
    location = urlsplit(logout.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == provider.url + "/end-session"
    params = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert params["post_logout_redirect_uri"] == browser.bff.url + "/"
    assert params["client_id"] == CLIENT_ID
    assert "id_token_hint" not in params  # no token travels through the browser
    assert provider.revoked == [refresh_token]
    assert "Max-Age=0" in logout.headers["set-cookie"]
    async with open_browser(browser.bff) as replay:  # a cookie captured before logout …
        replay.http.cookies.set("parley-session", captured or "")
        assert (await replay.user()).status_code == 401  # … is dead afterwards


async def test_logout_by_post_works_too(browser: Browser) -> None:
    await browser.sign_in()

    logout = await browser.http.post(await logout_url(browser))

    assert logout.status_code == 303
    assert (await browser.user()).status_code == 401


async def test_logout_without_sid_is_refused_and_keeps_the_session(browser: Browser) -> None:
    await browser.sign_in()

    for method in ("GET", "POST"):
        refused = await browser.http.request(method, "/bff/logout")
        assert refused.status_code == 400
        assert refused.json()["code"] == "logout_sid_missing"
    assert (await browser.user()).status_code == 200


async def test_logout_with_another_sessions_sid_is_refused(
    browser: Browser, bff: RunningBff
) -> None:
    async with open_browser(bff) as other:
        await other.sign_in()
        others_logout = await logout_url(other)
        await browser.sign_in()

        refused = await browser.http.get(others_logout)

        assert refused.status_code == 403
        assert (await browser.user()).status_code == 200
        assert (await other.user()).status_code == 200


async def test_logout_when_provider_has_no_end_session_endpoint_goes_home(
    redis_url: str, redis_namespace: str
) -> None:
    async with isolated_bff(redis_url, redis_namespace) as (provider, bff):
        provider.end_session_supported = False
        async with open_browser(bff) as browser:
            await browser.sign_in()

            logout = await browser.http.get(await logout_url(browser))

            assert logout.headers["location"] == bff.url + "/"
            assert (await browser.user()).status_code == 401


# --- back-channel logout ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def session_ended_events(redis_url: str, namespace: str) -> AsyncIterator[list[Event]]:
    client = redis.Redis.from_url(redis_url)
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    subscriber = EventBus(client, namespace).subscribe(collect, topics=[SESSION_ENDED_TOPIC])
    try:
        async with subscriber:
            await until(lambda: subscriber.connected)
            yield events
    finally:
        await client.aclose()


async def until(condition: Callable[[], object]) -> None:
    """Wait (up to 2 s) for ``condition`` to hold."""
    async with asyncio.timeout(2.0):
        while not condition():  # noqa: ASYNC110 - polling a plain attribute, nothing to await
            await asyncio.sleep(0.01)


async def post_logout_token(bff: RunningBff, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=bff.url) as provider_side:
        return await provider_side.post("/bff/backchannel-logout", data={"logout_token": token})


def provider_sid_of(provider: ScriptedProvider, sub: str) -> str:
    return next(grant.sid for grant in provider.refresh_tokens.values() if grant.user["sub"] == sub)


async def test_backchannel_logout_by_sid_kills_that_session_and_announces_it(
    browser: Browser, provider: ScriptedProvider, redis_url: str
) -> None:
    await browser.sign_in()
    sub = provider.next_user["sub"]
    public_id = parse_qs(urlsplit(await logout_url(browser)).query)["sid"][0]
    captured = browser.session_cookie()

    async with session_ended_events(redis_url, browser.bff.settings.redis_namespace) as events:
        answer = await post_logout_token(
            browser.bff, provider.logout_token(sid=provider_sid_of(provider, sub))
        )
        await until(lambda: events)

    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert (await browser.user()).status_code == 401
    async with open_browser(browser.bff) as replay:
        replay.http.cookies.set("parley-session", captured or "")
        assert (await replay.user()).status_code == 401
    assert events[0].type == "session.ended"
    assert events[0].data == {"session": public_id, "reason": "backchannel_logout"}
    assert events[0].user_ids == (sub,)


async def test_backchannel_logout_by_sub_kills_every_session_of_the_user_only(
    browser: Browser, provider: ScriptedProvider
) -> None:
    user = dict(provider.next_user)
    await browser.sign_in()
    async with open_browser(browser.bff) as laptop, open_browser(browser.bff) as bystander:
        provider.next_user = user
        await laptop.sign_in()
        provider.reset()  # someone else
        await bystander.sign_in()

        answer = await post_logout_token(browser.bff, provider.logout_token(sub=user["sub"]))

        assert answer.status_code == 200
        assert (await browser.user()).status_code == 401
        assert (await laptop.user()).status_code == 401
        assert (await bystander.user()).status_code == 200


@pytest.mark.parametrize(
    ("claims", "header", "forgery"),
    [
        pytest.param({"aud": "another-client"}, {}, None, id="wrong-aud"),
        pytest.param({"iss": "https://evil.example"}, {}, None, id="wrong-iss"),
        pytest.param({"iat": None}, {}, None, id="missing-iat"),
        pytest.param({}, {}, "alg_none", id="alg-none"),
        pytest.param({}, {}, "bad_signature", id="bad-signature"),
        pytest.param({"events": None}, {}, None, id="missing-events"),
        pytest.param({"events": {"urn:other-event": {}}}, {}, None, id="wrong-events"),
        pytest.param({"events": {BACKCHANNEL_LOGOUT_EVENT: "yes"}}, {}, None, id="bad-events"),
        pytest.param({"nonce": "n-0S6_WzA2Mj"}, {}, None, id="nonce-present"),
        pytest.param({}, {"typ": "JWT"}, None, id="typ-JWT"),
        pytest.param({}, {"typ": "at+jwt"}, None, id="typ-at+jwt"),
        pytest.param({"sid": None, "sub": None}, {}, None, id="neither-sid-nor-sub"),
        pytest.param({"exp": int(time.time()) - 3600}, {}, None, id="expired"),
    ],
)
async def test_backchannel_logout_token_that_must_be_refused_is_400_and_kills_nothing(
    browser: Browser,
    provider: ScriptedProvider,
    claims: dict[str, Any],
    header: dict[str, Any],
    forgery: Forgery | None,
) -> None:
    await browser.sign_in()
    sub = provider.next_user["sub"]
    token_claims = {"sub": sub, "sid": provider_sid_of(provider, sub)} | claims

    answer = await post_logout_token(
        browser.bff, provider.logout_token(header=header, forgery=forgery, **token_claims)
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert answer.headers["cache-control"] == "no-store"
    assert (await browser.user()).status_code == 200
    # The same token without the defect is accepted: the refusal above came from the defect.
    accepted = await post_logout_token(browser.bff, provider.logout_token(sub=sub))
    assert accepted.status_code == 200
    assert (await browser.user()).status_code == 401


async def test_backchannel_logout_without_a_token_is_400(bff: RunningBff) -> None:
    async with httpx.AsyncClient(base_url=bff.url) as http:
        answer = await http.post("/bff/backchannel-logout", data={"other": "x"})

    assert answer.status_code == 400
