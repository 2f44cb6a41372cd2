"""RP-initiated logout and back-channel logout, delivered to a real HTTP receiver."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.identity_service.support import (
    Browser,
    IdentityFactory,
    IdentityServer,
    LogoutReceiver,
    claims_of,
    exchange_code,
    form_inputs,
    refresh,
)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
DELIVERY_WAIT_SECONDS = 10.0


async def verified_logout_claims(identity: IdentityServer, token: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        keys = KeySet.import_key_set((await http.get(f"{identity.url}/jwks")).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == "logout+jwt"
    return dict(decoded.claims)


async def test_rp_initiated_logout_ends_the_session_and_tells_each_client(
    identity: IdentityServer,
    factory: IdentityFactory,
    browser: Browser,
    http: httpx.AsyncClient,
    receiver: tuple[LogoutReceiver, str],
) -> None:
    listener, backchannel_uri = receiver
    account = await factory.account()
    client = await factory.web_client(backchannel_logout_uri=backchannel_uri)
    silent_client = await factory.web_client()  # registered no back-channel URI
    # Registered the same URI, but got no tokens under this sign-in: must not be told.
    await factory.web_client(backchannel_logout_uri=backchannel_uri)
    callback = await browser.sign_in(client, account)
    tokens = (await exchange_code(http, identity, client, callback)).json()
    other_callback = await browser.sign_in(silent_client, account)
    assert (await exchange_code(http, identity, silent_client, other_callback)).status_code == 200

    response = await browser.http.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": client.post_logout_redirect_uri,
            "state": "after-logout",
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"{client.post_logout_redirect_uri}?state=after-logout"
    assert "parley_idp=" in response.headers["set-cookie"]  # deleted
    await asyncio.wait_for(listener.received.wait(), DELIVERY_WAIT_SECONDS)
    await asyncio.sleep(0.3)  # deliveries run concurrently: any other would have arrived
    assert len(listener.tokens) == 1
    claims = await verified_logout_claims(identity, listener.tokens[0])
    assert claims["iss"] == identity.url
    assert claims["aud"] == client.client_id
    assert claims["sub"] == account.id
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims
    assert claims["jti"]
    # The sign-in is over: its refresh tokens are dead and the browser must sign in again.
    assert (await refresh(http, identity, client, tokens["refresh_token"])).status_code == 400
    again, _, _ = await browser.authorize(client)
    assert again.headers["location"].startswith("/login?")


async def test_logout_tokens_name_the_session_that_ended(
    identity: IdentityServer,
    factory: IdentityFactory,
    browser: Browser,
    http: httpx.AsyncClient,
    receiver: tuple[LogoutReceiver, str],
) -> None:
    listener, backchannel_uri = receiver
    account = await factory.account()
    client = await factory.web_client(backchannel_logout_uri=backchannel_uri)
    callback = await browser.sign_in(client, account)
    tokens = (await exchange_code(http, identity, client, callback)).json()
    listener.failures_to_give = 1

    await browser.http.get("/logout", params={"id_token_hint": tokens["id_token"]})

    await asyncio.wait_for(listener.received.wait(), DELIVERY_WAIT_SECONDS)
    assert listener.attempts == 2, "a 503 from the client is retried"
    claims = await verified_logout_claims(identity, listener.tokens[0])
    assert claims["sid"] == claims_of(tokens["access_token"])["sid"]


async def test_no_redirect_to_an_unregistered_post_logout_uri(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    callback = await browser.sign_in(client, account)
    tokens = (await exchange_code(http, identity, client, callback)).json()

    response = await browser.http.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "http://127.0.0.1:9/elsewhere",
        },
    )

    assert response.status_code == 200
    assert "location" not in response.headers
    assert "You have signed out" in response.text


async def test_logout_without_a_hint_asks_first_and_needs_this_browsers_form(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    await browser.sign_in(client, account)

    page = await browser.http.get("/logout")
    forged = await browser.http.post("/logout", data={"csrf_token": "0" * 64})
    still_signed_in, _, _ = await browser.authorize(client)
    confirmed = await browser.http.post("/logout", data=form_inputs(page.text))
    after, _, _ = await browser.authorize(client)

    assert page.status_code == 200
    assert "Sign out of Parley?" in page.text
    assert forged.status_code == 403
    assert still_signed_in.status_code == 302
    assert confirmed.status_code == 200
    assert "You have signed out" in confirmed.text
    assert after.headers["location"].startswith("/login?")


@pytest.mark.parametrize(
    ("registered", "returns_to_client"),
    [pytest.param(True, True, id="registered-uri"), pytest.param(False, False, id="other-uri")],
)
async def test_a_confirmed_logout_without_a_hint_returns_only_to_a_registered_uri(
    identity: IdentityServer,
    factory: IdentityFactory,
    browser: Browser,
    registered: bool,
    returns_to_client: bool,
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    await browser.sign_in(client, account)
    target = client.post_logout_redirect_uri if registered else "http://127.0.0.1:9/elsewhere"

    page = await browser.http.get(
        "/logout",
        params={"client_id": client.client_id, "post_logout_redirect_uri": target, "state": "s1"},
    )
    unconfirmed_location = page.headers.get("location")
    confirmed = await browser.http.post("/logout", data=form_inputs(page.text))

    assert page.status_code == 200  # asks first: no redirect before the person confirms
    assert unconfirmed_location is None
    if returns_to_client:
        assert confirmed.status_code == 303
        assert confirmed.headers["location"] == f"{target}?state=s1"
    else:
        assert confirmed.status_code == 200
        assert "location" not in confirmed.headers
        assert "You have signed out" in confirmed.text


async def test_an_access_token_is_not_accepted_as_id_token_hint(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    callback = await browser.sign_in(client, account)
    tokens = (await exchange_code(http, identity, client, callback)).json()

    response = await http.get(
        f"{identity.url}/logout",
        params={
            "id_token_hint": tokens["access_token"],
            "post_logout_redirect_uri": client.post_logout_redirect_uri,
        },
    )

    assert response.status_code == 400
    assert "location" not in response.headers
    assert (await refresh(http, identity, client, tokens["refresh_token"])).status_code == 200
