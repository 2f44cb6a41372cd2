"""Refresh-token rotation and reuse detection, revocation, client credentials and userinfo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from identity_service.admin import disable_user
from servicekit.tokens import AccessTokenVerifier
from tests.identity_service.support import (
    Browser,
    IdentityFactory,
    IdentityServer,
    Person,
    RegisteredClient,
    claims_of,
    client_credentials,
    exchange_code,
    refresh,
)


@pytest.fixture
async def verifier(identity: IdentityServer) -> AsyncIterator[AccessTokenVerifier]:
    async with httpx.AsyncClient() as client:
        yield AccessTokenVerifier(identity.url, identity.audience, client)


async def signed_in_tokens(
    identity: IdentityServer,
    browser: Browser,
    http: httpx.AsyncClient,
    client: RegisteredClient,
    account: Person,
    **overrides: str | None,
) -> dict[str, str]:
    callback = await browser.sign_in(client, account, **overrides)
    response = await exchange_code(http, identity, client, callback)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def test_refreshing_rotates_the_refresh_token_and_keeps_the_session(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    first = await signed_in_tokens(identity, browser, http, client, account)

    response = await refresh(http, identity, client, first["refresh_token"])

    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert claims_of(second["access_token"])["sid"] == claims_of(first["access_token"])["sid"]
    assert claims_of(second["access_token"])["sub"] == account.id
    third = await refresh(http, identity, client, second["refresh_token"])
    assert third.status_code == 200


async def test_reusing_a_refresh_token_revokes_its_whole_family(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    first = await signed_in_tokens(identity, browser, http, client, account)
    second = (await refresh(http, identity, client, first["refresh_token"])).json()

    reuse = await refresh(http, identity, client, first["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # The legitimate holder's newer token went down with the family.
    after = await refresh(http, identity, client, second["refresh_token"])
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


async def test_concurrent_uses_of_one_refresh_token_yield_at_most_one_new_token(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    first = await signed_in_tokens(identity, browser, http, client, account)

    responses = await asyncio.gather(
        *(refresh(http, identity, client, first["refresh_token"]) for _ in range(5))
    )

    successes = [response for response in responses if response.status_code == 200]
    assert len(successes) <= 1
    assert all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code != 200)


async def test_a_refresh_token_works_only_for_its_own_client(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    tokens = await signed_in_tokens(identity, browser, http, client, account)

    response = await refresh(http, identity, await factory.web_client(), tokens["refresh_token"])

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_a_revoked_refresh_token_is_dead_and_access_tokens_answer_200(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    tokens = await signed_in_tokens(identity, browser, http, client, account)

    revoked = await http.post(
        f"{identity.url}/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=client.auth,
    )
    access = await http.post(
        f"{identity.url}/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
        auth=client.auth,
    )
    unauthenticated = await http.post(
        f"{identity.url}/revoke", data={"token": tokens["refresh_token"]}
    )

    assert revoked.status_code == 200
    assert access.status_code == 200
    assert unauthenticated.status_code in (400, 401)
    assert unauthenticated.json()["error"] == "invalid_client"
    response = await refresh(http, identity, client, tokens["refresh_token"])
    assert response.json()["error"] == "invalid_grant"


async def test_a_disabled_account_can_no_longer_refresh(
    identity: IdentityServer,
    factory: IdentityFactory,
    browser: Browser,
    http: httpx.AsyncClient,
    database_url: str,
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    tokens = await signed_in_tokens(identity, browser, http, client, account)

    await disable_user(database_url, account.id)

    response = await refresh(http, identity, client, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_a_machine_client_gets_a_token_within_its_scopes(
    identity: IdentityServer,
    factory: IdentityFactory,
    http: httpx.AsyncClient,
    verifier: AccessTokenVerifier,
) -> None:
    bot = await factory.machine_client(scopes=("chat.read", "chat.write"))

    everything = await client_credentials(http, identity, bot)
    narrowed = await client_credentials(http, identity, bot, scope="chat.read")
    too_much = await client_credentials(http, identity, bot, scope="chat.read chat.admin")
    wrong_resource = await client_credentials(http, identity, bot, resource="https://other/api")
    right_audience = await client_credentials(http, identity, bot, audience=identity.audience)

    assert everything.status_code == 200, everything.text
    assert "refresh_token" not in everything.json()
    principal = await verifier.verify(everything.json()["access_token"])
    assert principal.kind == "machine"
    assert principal.id == f"machine:{bot.client_id}"
    assert principal.scopes == {"chat.read", "chat.write"}
    claims = claims_of(everything.json()["access_token"])
    assert claims["sub"] == claims["client_id"] == bot.client_id
    assert "sid" not in claims
    assert (await verifier.verify(narrowed.json()["access_token"])).scopes == {"chat.read"}
    assert (too_much.status_code, too_much.json()["error"]) == (400, "invalid_scope")
    assert (wrong_resource.status_code, wrong_resource.json()["error"]) == (400, "invalid_target")
    assert right_audience.status_code == 200


async def test_each_kind_of_client_is_limited_to_its_own_grants(
    identity: IdentityServer, factory: IdentityFactory, http: httpx.AsyncClient
) -> None:
    web = await factory.web_client()
    bot = await factory.machine_client()

    web_asks_client_credentials = await client_credentials(http, identity, web)
    bot_asks_authorization = await http.get(
        f"{identity.url}/authorize",
        params={
            "response_type": "code",
            "client_id": bot.client_id,
            "redirect_uri": "http://127.0.0.1:9/cb",
        },
    )

    assert web_asks_client_credentials.json()["error"] == "unauthorized_client"
    assert bot_asks_authorization.status_code == 400
    assert "location" not in bot_asks_authorization.headers


async def test_userinfo_returns_the_claims_the_scope_allows(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account(name="Katherine Johnson", email="kj-userinfo@example.com")
    client = await factory.web_client()
    tokens = await signed_in_tokens(
        identity, browser, http, client, account, scope="openid profile"
    )

    response = await http.get(
        f"{identity.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )

    assert response.status_code == 200
    assert response.json() == {"sub": account.id, "name": "Katherine Johnson"}


async def test_userinfo_refuses_missing_machine_and_id_tokens(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    tokens = await signed_in_tokens(identity, browser, http, await factory.web_client(), account)
    bot = await factory.machine_client()
    machine_token = (await client_credentials(http, identity, bot)).json()["access_token"]

    missing = await http.get(f"{identity.url}/userinfo")
    machine = await http.get(
        f"{identity.url}/userinfo", headers={"Authorization": f"Bearer {machine_token}"}
    )
    id_token = await http.get(
        f"{identity.url}/userinfo", headers={"Authorization": f"Bearer {tokens['id_token']}"}
    )

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert machine.status_code == 403
    assert id_token.status_code == 401
    assert id_token.headers["content-type"] == "application/problem+json"
