"""The whole sign-in against Parley's own OpenID Provider, every hop over real HTTP.

A browser (httpx, one cookie jar for the BFF's and identity_service's origins) signs in through
the BFF at identity_service with a seeded person's password, calls the people directory through
the BFF's proxy, talks to realtime_service through ``/realtime``, and signs out through
identity_service's end-session endpoint, whose back-channel logout reaches the BFF. Machine
clients get client-credentials tokens from identity_service and call the API directly and
through the BFF. No token ever reaches the browser.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from parley.seed import (
    DEMO_BOT_ID,
    DEMO_BOT_SECRET,
    SERVICES_CLIENT_ID,
    SERVICES_CLIENT_SECRET,
)
from tests.bff.conftest import Browser, open_browser
from tests.bff.test_realtime_relay import close_code, open_socket, ping
from tests.e2e.conftest import BFF_CLIENT_ID, Stack
from tests.e2e.journeys import demo_person, open_sign_in_page, sign_in, submit_sign_in
from tests.identity_service.support import (
    Login,
    RegisteredClient,
    client_credentials,
    form_inputs,
)

pytestmark = pytest.mark.slow

SESSION_ENDED_CLOSE_CODE = 4001  # the BFF's close code for a socket whose session ended
# identity_service sends back-channel logouts after its response: poll every 50 ms, for 10 s.
BACKCHANNEL_POLL_SECONDS = 0.05
BACKCHANNEL_POLLS = 200
IDENTITY_COOKIES = frozenset({"parley_idp", "parley_idp_browser"})
BFF_COOKIES = frozenset({"parley-session", "parley-login"})
TOO_MANY_SIGN_IN_ATTEMPTS = 10  # well above the provider's per-account limit of 5 a minute
_FORM_ERROR = re.compile(r'<p id="form-error"[^>]*>([^<]*)</p>')


@pytest.fixture
async def browser(stack: Stack) -> AsyncIterator[Browser]:
    async with open_browser(stack.bff) as opened:
        yield opened


async def join_provider_session(stack: Stack, signed_in: Browser, other: Browser) -> None:
    """Sign ``other`` in at the BFF on ``signed_in``'s provider session (its identity cookies,
    not its BFF cookie): the provider approves without asking, a second BFF session starts."""
    for cookie in signed_in.http.cookies.jar:
        if cookie.name in IDENTITY_COOKIES:
            other.http.cookies.jar.set_cookie(cookie)
    login = await other.start_login("/")
    approved = await other.http.get(login.headers["location"])
    assert approved.status_code == 302, approved.text
    callback = await other.http.get(approved.headers["location"])
    assert callback.status_code == 302, callback.text


async def start_sign_out(browser: Browser, stack: Stack) -> tuple[httpx.Response, httpx.Response]:
    """The user's logout URL at the BFF; its redirect and identity_service's confirmation page."""
    user = await browser.user()
    assert user.status_code == 200, user.text
    logout = await browser.http.get(user.json()["logout_url"])
    assert logout.status_code == 303, logout.text
    end_session = logout.headers["location"]
    assert end_session.startswith(f"{stack.identity.url}/logout?"), end_session
    confirmation = await browser.http.get(end_session)
    assert confirmation.status_code == 200, confirmation.text
    return logout, confirmation


async def confirm_sign_out(
    browser: Browser, stack: Stack, confirmation: httpx.Response
) -> httpx.Response:
    return await browser.http.post(
        f"{stack.identity.url}/logout", data=form_inputs(confirmation.text)
    )


async def directory_search(
    http: httpx.AsyncClient, url: str, query: str, **headers: str
) -> set[str]:
    response = await http.get(f"{url}/api/users", params={"q": query}, headers=headers)
    assert response.status_code == 200, response.text
    return {item["email"] for item in response.json()["items"]}


async def user_with_cookie(stack: Stack, session_cookie: str) -> httpx.Response:
    """``/bff/user`` for whoever presents ``session_cookie``, from a browser of their own."""
    async with httpx.AsyncClient(base_url=stack.bff.url) as elsewhere:
        return await elsewhere.get(
            "/bff/user", headers={"X-CSRF": "1", "Cookie": f"parley-session={session_cookie}"}
        )


async def until_signed_out(browser: Browser) -> None:
    for _ in range(BACKCHANNEL_POLLS):
        if (await browser.user()).status_code == 401:
            return
        await asyncio.sleep(BACKCHANNEL_POLL_SECONDS)
    raise AssertionError("the BFF session outlived the provider's back-channel logout")


def assert_no_token_in(responses: Iterable[httpx.Response]) -> None:
    for response in responses:
        assert response.url.path != "/token", "the browser never calls the token endpoint"
        where = f"{response.request.method} {response.url}"
        assert "eyJ" not in response.text, where
        for name, value in response.headers.multi_items():
            assert "eyJ" not in value, f"{where}: header {name}"


async def test_alice_signs_in_uses_the_api_and_realtime_then_signs_out_everywhere(
    stack: Stack, browser: Browser
) -> None:
    alice, bob = demo_person(stack, "Alice"), demo_person(stack, "Bob")

    landed = await sign_in(browser, stack, alice, "/conversations")

    assert landed.status_code == 302, landed.text
    assert landed.headers["location"] == f"{stack.bff.url}/conversations"
    # Cookies are kept per host, not per port: both apps' cookies share the jar for 127.0.0.1,
    # and work side by side because their names differ.
    jar = {(cookie.name, cookie.domain) for cookie in browser.http.cookies.jar}
    assert {(name, "127.0.0.1") for name in IDENTITY_COOKIES | BFF_COOKIES} <= jar

    user = await browser.user()
    assert user.status_code == 200, user.text
    claims = user.json()["claims"]
    assert claims["email"] == alice.identifier
    assert claims["name"] == "Alice"
    assert not [name for name in user.json() if "token" in name]
    assert not [name for name in claims if "token" in name]

    # The proxy attaches Alice's access token; identity_service's directory accepts it.
    assert bob.identifier in await directory_search(
        browser.http, stack.bff.url, "bob", **{"X-CSRF": "1"}
    )
    me = await browser.http.get(f"/api/users/{claims['sub']}", headers={"X-CSRF": "1"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == alice.identifier

    async with open_socket(browser) as socket, open_browser(stack.bff) as other_tab:
        assert await ping(socket) == {"type": "pong"}
        await join_provider_session(stack, browser, other_tab)
        assert (await other_tab.user()).status_code == 200
        captured_cookie = browser.session_cookie()
        assert captured_cookie
        assert (await user_with_cookie(stack, captured_cookie)).status_code == 200

        logout, confirmation = await start_sign_out(browser, stack)

        end_session = parse_qs(urlsplit(logout.headers["location"]).query)
        assert end_session["client_id"] == [BFF_CLIENT_ID]
        assert end_session["post_logout_redirect_uri"] == [f"{stack.bff.url}/"]
        assert "id_token_hint" not in end_session
        assert await close_code(socket) == SESSION_ENDED_CLOSE_CODE
        assert "Sign out of Parley?" in confirmation.text
        # Only this tab's BFF session has ended so far; the provider's lives on.
        assert (await other_tab.user()).status_code == 200
        signed_out = await confirm_sign_out(browser, stack, confirmation)
        assert signed_out.status_code < 400, signed_out.text

        assert (await browser.user()).status_code == 401
        assert (await user_with_cookie(stack, captured_cookie)).status_code == 401
        # Identity_service's back-channel logout ends the other BFF session of that sign-in.
        await until_signed_out(other_tab)
        # The provider's session is over, even for the tab that still holds its cookie.
        for tab in (browser, other_tab):
            login = await tab.start_login("/")
            authorize = await tab.http.get(login.headers["location"])
            assert authorize.status_code == 303, authorize.text
            assert authorize.headers["location"].startswith("/login?")


async def test_signing_out_at_identity_service_returns_to_parley(
    stack: Stack, browser: Browser
) -> None:
    await sign_in(browser, stack, demo_person(stack, "Alice"))
    _, confirmation = await start_sign_out(browser, stack)

    signed_out = await confirm_sign_out(browser, stack, confirmation)

    assert signed_out.status_code in (302, 303), signed_out.text
    assert signed_out.headers["location"] == f"{stack.bff.url}/"


async def test_no_token_reaches_the_browser_during_the_whole_journey(
    stack: Stack, browser: Browser
) -> None:
    async with open_browser(stack.bff) as other_tab:
        await sign_in(browser, stack, demo_person(stack, "Alice"), "/conversations")
        await browser.user()
        await directory_search(browser.http, stack.bff.url, "bob", **{"X-CSRF": "1"})
        async with open_socket(browser) as socket:
            assert await ping(socket) == {"type": "pong"}
            handshake = socket.response
            assert handshake is not None
            await join_provider_session(stack, browser, other_tab)
            _, confirmation = await start_sign_out(browser, stack)
            await confirm_sign_out(browser, stack, confirmation)
            await close_code(socket)
        await until_signed_out(other_tab)

        responses = browser.responses + other_tab.responses
        origins = {f"{r.url.scheme}://{r.url.netloc.decode()}" for r in responses}
        assert origins == {stack.bff.url, stack.identity.url}
        assert_no_token_in(responses)
        assert not [value for _, value in handshake.headers.raw_items() if "eyJ" in value]


async def test_a_wrong_password_is_refused_generically_and_repeated_failures_throttled(
    stack: Stack, browser: Browser
) -> None:
    carol = demo_person(stack, "Carol")
    wrong = Login(carol.identifier, carol.password + "-wrong")
    page = await open_sign_in_page(browser, stack, "/")

    refused = await submit_sign_in(browser, stack, page, wrong)
    unknown = await submit_sign_in(
        browser, stack, page, Login("nobody-" + carol.identifier, carol.password)
    )

    assert refused.status_code == 400, refused.text
    assert "location" not in refused.headers
    assert 'name="password"' in refused.text  # the sign-in form again
    # The same words whether the account exists or not.
    assert _FORM_ERROR.findall(refused.text) == _FORM_ERROR.findall(unknown.text)
    assert _FORM_ERROR.findall(refused.text) != []

    attempts = [refused]
    while attempts[-1].status_code != 429 and len(attempts) < TOO_MANY_SIGN_IN_ATTEMPTS:
        attempts.append(await submit_sign_in(browser, stack, attempts[-1], wrong))
    throttled = attempts[-1]
    assert throttled.status_code == 429, [a.status_code for a in attempts]
    assert int(throttled.headers["Retry-After"]) > 0
    assert "location" not in throttled.headers
    # While throttled even the right password gets nowhere.
    right = await submit_sign_in(browser, stack, throttled, carol)
    assert right.status_code == 429
    assert "location" not in right.headers
    assert (await browser.user()).status_code == 401


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        pytest.param(DEMO_BOT_ID, DEMO_BOT_SECRET, id="demo-bot"),
        pytest.param(SERVICES_CLIENT_ID, SERVICES_CLIENT_SECRET, id="parley-services"),
    ],
)
async def test_a_machine_client_reads_the_directory_directly_and_through_the_bff(
    stack: Stack, client_id: str, secret: str
) -> None:
    client = RegisteredClient(client_id, secret)
    alice = demo_person(stack, "Alice")
    async with httpx.AsyncClient(timeout=10.0) as machine:
        token = await client_credentials(machine, stack.identity, client)
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

        direct = await directory_search(machine, stack.identity.url, "alice", **bearer)
        through_bff = await directory_search(machine, stack.bff.url, "alice", **bearer)

    assert alice.identifier in direct
    assert through_bff == direct


async def test_a_machine_token_without_a_directory_scope_is_refused(stack: Stack) -> None:
    bot = RegisteredClient(stack.demo.bot_id, stack.demo.bot_secret)
    async with httpx.AsyncClient(timeout=10.0) as machine:
        token = await client_credentials(machine, stack.identity, bot, scope="chat.write")
        assert token.status_code == 200, token.text
        assert token.json()["scope"] == "chat.write"
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

        answers = [
            await machine.get(f"{url}/api/users", params={"q": "alice"}, headers=bearer)
            for url in (stack.identity.url, stack.bff.url)
        ]

    assert [answer.status_code for answer in answers] == [403, 403]
    assert [answer.json()["code"] for answer in answers] == ["insufficient_scope"] * 2
