"""The authorization code flow with PKCE, driven like a browser and a client over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from servicekit.tokens import AccessTokenVerifier
from tests.identity_service.support import (
    Browser,
    IdentityFactory,
    IdentityServer,
    callback_of,
    claims_of,
    exchange_code,
    form_inputs,
    header_of,
)


async def test_sign_in_yields_an_id_token_and_an_access_token_for_the_api(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account(name="Grace Hopper")
    client = await factory.web_client()

    callback = await browser.sign_in(client, account)
    response = await exchange_code(http, identity, client, callback)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"]
    id_token = claims_of(tokens["id_token"])
    assert id_token["iss"] == identity.url
    assert id_token["aud"] == client.client_id
    assert id_token["sub"] == account.id
    assert id_token["nonce"] == callback.nonce
    assert 0 <= id_token["iat"] - id_token["auth_time"] < 60
    assert id_token["name"] == "Grace Hopper"
    assert id_token["at_hash"]
    access = claims_of(tokens["access_token"])
    assert header_of(tokens["access_token"])["typ"] == "at+jwt"
    assert access["aud"] == identity.audience
    assert access["sid"] == id_token["sid"]
    assert access["client_id"] == client.client_id
    assert access["exp"] - access["iat"] == identity.settings.access_token_lifetime_seconds
    async with httpx.AsyncClient() as verifier_http:
        verifier = AccessTokenVerifier(identity.url, identity.audience, verifier_http)
        principal = await verifier.verify(tokens["access_token"])
    assert principal.kind == "user"
    assert principal.id == account.id


async def test_state_and_issuer_come_back_with_the_code(
    factory: IdentityFactory, browser: Browser, identity: IdentityServer
) -> None:
    account = await factory.account()
    client = await factory.web_client()

    callback = await browser.sign_in(client, account, state="opaque-state/with=chars")

    assert callback.parameters["state"] == "opaque-state/with=chars"
    assert callback.parameters["iss"] == identity.url
    assert len(callback.code) >= 40


async def test_a_signed_in_browser_gets_a_code_without_seeing_the_form_again(
    factory: IdentityFactory, browser: Browser
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    await browser.sign_in(client, account)

    response, _, _ = await browser.authorize(await factory.web_client())

    assert response.status_code == 302
    assert "code=" in response.headers["location"]


async def test_prompt_login_shows_the_form_even_when_signed_in(
    factory: IdentityFactory, browser: Browser
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    await browser.sign_in(client, account)

    response, _, _ = await browser.authorize(client, prompt="login")

    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?")


async def test_prompt_none_without_a_session_returns_login_required(
    factory: IdentityFactory, browser: Browser
) -> None:
    client = await factory.web_client()

    response, parameters, _ = await browser.authorize(client, prompt="none")

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(client.redirect_uri + "?")
    assert "error=login_required" in location
    assert f"state={parameters['state']}" in location


@pytest.mark.parametrize(
    ("overrides", "described"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "PKCE is required"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"code_challenge_method": None}, "S256"),
    ],
    ids=["no-pkce", "plain", "no-method"],
)
async def test_authorization_requests_without_s256_pkce_are_refused(
    factory: IdentityFactory,
    browser: Browser,
    overrides: dict[str, str | None],
    described: str,
) -> None:
    client = await factory.web_client()

    response, _, _ = await browser.authorize(client, **overrides)

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(client.redirect_uri + "?")
    assert "error=invalid_request" in location
    assert described.replace(" ", "+") in location


@pytest.mark.parametrize(
    ("verifier", "error"),
    [(None, "invalid_request"), ("x" * 43, "invalid_grant")],
    ids=["missing", "wrong"],
)
async def test_a_code_needs_its_own_code_verifier(
    identity: IdentityServer,
    factory: IdentityFactory,
    browser: Browser,
    http: httpx.AsyncClient,
    verifier: str | None,
    error: str,
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    callback = await browser.sign_in(client, account)

    response = await exchange_code(http, identity, client, callback, code_verifier=verifier)

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert "access_token" not in response.text


async def test_a_code_works_once_and_its_replay_revokes_the_tokens_it_gave(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    callback = await browser.sign_in(client, account)
    first = await exchange_code(http, identity, client, callback)
    assert first.status_code == 200

    replay = await exchange_code(http, identity, client, callback)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    refreshed = await http.post(
        f"{identity.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        auth=client.auth,
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


async def test_a_code_is_bound_to_its_redirect_uri_and_client(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    other_client = await factory.web_client()

    callback = await browser.sign_in(client, account)
    wrong_uri = await exchange_code(
        http, identity, client, callback, redirect_uri=client.redirect_uri + "/other"
    )
    callback = await browser.sign_in(client, account)
    wrong_client = await exchange_code(http, identity, other_client, callback)

    assert wrong_uri.status_code == 400
    assert wrong_uri.json()["error"] == "invalid_grant"
    assert wrong_client.status_code == 400
    assert wrong_client.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://127.0.0.1:9/attacker"},
        {"redirect_uri": None},
        {"client_id": "no-such-client"},
        {"redirect_uri": 'http://127.0.0.1:9/"quoted'},
    ],
    ids=["unregistered-uri", "no-uri", "unknown-client", "unquotable-uri"],
)
async def test_no_redirect_to_an_unvalidated_redirect_uri(
    factory: IdentityFactory, browser: Browser, overrides: dict[str, str | None]
) -> None:
    client = await factory.web_client()

    response, _, _ = await browser.authorize(client, **overrides)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "not valid" in response.text


async def test_tokens_for_another_resource_are_refused(
    factory: IdentityFactory, browser: Browser
) -> None:
    client = await factory.web_client()

    response, _, _ = await browser.authorize(client, resource="https://elsewhere.example/api")

    assert response.status_code == 302
    assert "error=invalid_target" in response.headers["location"]


async def test_client_authentication_by_basic_or_post_and_nothing_else(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client()

    callback = await browser.sign_in(client, account)
    wrong_secret = await http.post(
        f"{identity.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": callback.code,
            "redirect_uri": callback.redirect_uri,
            "code_verifier": callback.pkce.verifier,
        },
        auth=httpx.BasicAuth(client.client_id, "not-the-secret"),
    )
    callback = await browser.sign_in(client, account)
    by_post = await http.post(
        f"{identity.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": callback.code,
            "redirect_uri": callback.redirect_uri,
            "code_verifier": callback.pkce.verifier,
            "client_id": client.client_id,
            "client_secret": client.secret,
        },
    )

    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert wrong_secret.headers["www-authenticate"].startswith("Basic")
    assert by_post.status_code == 200, by_post.text


async def test_malformed_token_requests_get_oauth_errors_not_server_errors(
    identity: IdentityServer, factory: IdentityFactory, http: httpx.AsyncClient
) -> None:
    client = await factory.web_client()
    token_url = f"{identity.url}/token"

    as_json = await http.post(token_url, json={"grant_type": "client_credentials"})
    repeated = await http.post(
        token_url,
        content="grant_type=authorization_code&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=client.auth,
    )
    bad_basic = await http.post(
        token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic //79/w=="},
    )
    unknown_grant = await http.post(token_url, data={"grant_type": "password"}, auth=client.auth)

    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert (repeated.status_code, repeated.json()["error"]) == (400, "invalid_request")
    assert (bad_basic.status_code, bad_basic.json()["error"]) == (401, "invalid_client")
    assert unknown_grant.json()["error"] == "unsupported_grant_type"


async def test_a_client_that_is_not_first_party_asks_for_consent(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser, http: httpx.AsyncClient
) -> None:
    account = await factory.account()
    client = await factory.web_client(first_party=False)
    response, parameters, pkce = await browser.authorize(client)
    form = await browser.open_sign_in_form(response)
    signed_in = await browser.submit_sign_in(form, account.identifier, account.password)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"].startswith("/consent?")

    page = await browser.http.get(signed_in.headers["location"])
    assert page.status_code == 200
    assert "see your email address" in page.text
    consent_form = form_inputs(page.text)
    denied = await browser.http.post("/consent", data={**consent_form, "decision": "deny"})

    assert denied.status_code == 303
    assert "error=access_denied" in denied.headers["location"]
    assert f"state={parameters['state']}" in denied.headers["location"]

    response, parameters, pkce = await browser.authorize(client)
    page = await browser.http.get(response.headers["location"])
    allowed = await browser.http.post(
        "/consent", data={**form_inputs(page.text), "decision": "allow"}
    )
    callback = callback_of(allowed, parameters, pkce)
    assert (await exchange_code(http, identity, client, callback)).status_code == 200
