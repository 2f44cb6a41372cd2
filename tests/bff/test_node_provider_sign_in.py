"""The whole sign-in against node-oidc-provider, an OpenID Provider Parley did not write.

Login → provider's login page → callback → /bff/user → proxied API call (the echo service checks
the access token against the provider's JWKS) → refresh → logout through the provider's
end-session endpoint; back-channel logout sent by the provider; a machine client through the
BFF and directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.bff.conftest import Browser, EchoApi, RunningBff, open_browser, running_bff
from tests.support.node_provider import (
    NodeProvider,
    client_credentials_token,
    machine_client,
    running_node_provider,
    sign_in,
    sign_out,
    web_client,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

AUDIENCE = "https://api.parley.test"  # RFC 8707: a resource indicator is an absolute URI
CLIENT_ID = "parley-bff"
CLIENT_SECRET = "node-provider-bff-secret"
BOT_ID, BOT_SECRET = "reader-bot", "reader-bot-secret"
ACCOUNTS = {
    "alice": {
        "sub": "node-alice",
        "name": "Alice Liddell",
        "email": "alice@example.test",
        "email_verified": True,
        "preferred_username": "alice",
    },
}


@pytest.fixture(scope="module")
def bff_port() -> int:
    """Chosen first: the provider must know the BFF's URLs before the BFF can start."""
    return free_port()


@pytest.fixture(scope="module")
def bff_url(bff_port: int) -> str:
    return f"http://127.0.0.1:{bff_port}"


@pytest.fixture(scope="module")
def node_provider(bff_url: str) -> Iterator[NodeProvider]:
    clients = [
        web_client(
            CLIENT_ID,
            CLIENT_SECRET,
            bff_url + "/bff/callback",
            post_logout_redirect_uri=bff_url + "/",
            backchannel_logout_uri=bff_url + "/bff/backchannel-logout",
        ),
        machine_client(BOT_ID, BOT_SECRET, scope="chat.read"),
    ]
    with running_node_provider(clients=clients, accounts=ACCOUNTS, audience=AUDIENCE) as node:
        yield node


@pytest.fixture(scope="module")
async def node_bff(
    node_provider: NodeProvider,
    bff_port: int,
    echo_api: EchoApi,
    redis_url: str,
    redis_namespace: str,
) -> AsyncIterator[RunningBff]:
    echo_api.trust(node_provider.issuer, AUDIENCE)
    environ = {
        "OIDC_ISSUER": node_provider.issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPES": "openid profile email offline_access chat.read chat.write",
        "API_AUDIENCE": AUDIENCE,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": redis_namespace,
        "SESSION_SECRET": "node-provider-tests-session-secret-long-enough",
        "CONVERSATIONS_URL": echo_api.url,
        "LOGIN_RATE_LIMIT": "10000/minute",
    }
    async with running_bff(environ, port=bff_port) as running:
        yield running


@pytest.fixture
async def browser(node_bff: RunningBff) -> AsyncIterator[Browser]:
    try:
        async with open_browser(node_bff) as opened:
            yield opened
    finally:
        node_bff.clock.offset = 0.0


async def sign_in_as_alice(browser: Browser) -> httpx.Response:
    login = await browser.start_login("/conversations")
    to_callback = await sign_in(browser.http, login.headers["location"], login="alice")
    return await browser.http.get(to_callback.headers["location"])


async def until_signed_out(browser: Browser) -> None:
    for _ in range(200):  # the provider posts the logout token asynchronously
        if (await browser.user()).status_code == 401:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the session outlived the back-channel logout")


async def test_whole_sign_in_api_call_and_logout(
    browser: Browser, node_provider: NodeProvider, bff_url: str
) -> None:
    callback = await sign_in_as_alice(browser)

    assert callback.status_code == 302
    assert callback.headers["location"] == bff_url + "/conversations"
    user = await browser.user()
    assert user.status_code == 200
    claims = user.json()["claims"]
    assert claims["sub"] == "node-alice"
    assert claims["name"] == "Alice Liddell"
    assert claims["email"] == "alice@example.test"
    api = await browser.api()
    assert api.status_code == 200
    assert api.json()["sub"] == "node-alice"
    assert api.json()["kind"] == "user"

    logout = await browser.http.get(user.json()["logout_url"])

    assert logout.status_code == 303
    end_session = logout.headers["location"]
    assert end_session.startswith(node_provider.end_session_endpoint)
    end_session_params = parse_qs(urlsplit(end_session).query)
    assert "id_token_hint" not in end_session_params
    assert end_session_params["client_id"] == [CLIENT_ID]
    assert (await browser.user()).status_code == 401
    back_home = await sign_out(browser.http, end_session)
    assert back_home.headers["location"] == bff_url + "/"


async def test_provider_logout_reaches_the_bff_by_back_channel(
    browser: Browser, node_provider: NodeProvider, bff_url: str
) -> None:
    await sign_in_as_alice(browser)
    assert (await browser.user()).status_code == 200

    # Signing out at the provider itself, not through the BFF.
    query = httpx.QueryParams(client_id=CLIENT_ID, post_logout_redirect_uri=bff_url + "/")
    await sign_out(browser.http, f"{node_provider.end_session_endpoint}?{query}")

    await until_signed_out(browser)


async def test_expired_access_token_is_refreshed_once_for_concurrent_calls(
    browser: Browser, node_bff: RunningBff
) -> None:
    await sign_in_as_alice(browser)
    token_ids = {(await browser.api()).json()["token_id"]}

    for _ in range(2):  # twice: the second refresh needs the rotated refresh token
        node_bff.clock.advance(300)  # the provider's access-token lifetime
        responses = await asyncio.gather(*(browser.api() for _ in range(50)))
        # node-oidc-provider rotates refresh tokens and treats a reused one as theft, revoking
        # the whole grant: a second concurrent refresh would make calls fail.
        assert [r.status_code for r in responses] == [200] * 50
        new_token_ids = {r.json()["token_id"] for r in responses}
        assert len(new_token_ids) == 1
        assert not new_token_ids & token_ids
        token_ids |= new_token_ids


async def test_machine_client_calls_the_api_through_the_bff_and_directly(
    node_provider: NodeProvider, node_bff: RunningBff, echo_api: EchoApi
) -> None:
    token = await client_credentials_token(node_provider, BOT_ID, BOT_SECRET, "chat.read")

    async with httpx.AsyncClient() as machine:
        headers = {"Authorization": f"Bearer {token}"}
        through_bff = await machine.get(f"{node_bff.url}/api/conversations", headers=headers)
        direct = await machine.get(f"{echo_api.url}/api/conversations", headers=headers)

    assert through_bff.status_code == direct.status_code == 200
    assert through_bff.json()["kind"] == direct.json()["kind"] == "machine"
    assert through_bff.json()["sub"] == direct.json()["sub"] == BOT_ID
