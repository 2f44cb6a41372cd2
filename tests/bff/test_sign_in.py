"""Signing in: the authorization request, login state, where the browser lands, and errors."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as redis

from tests.bff.conftest import (
    Browser,
    EchoApi,
    RunningBff,
    bff_environment,
    open_browser,
    running_bff,
)
from tests.bff.scripted_provider import CLIENT_ID, ScriptedProvider
from tests.support.issuer import DEFAULT_AUDIENCE


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


async def test_full_sign_in_reaches_user_and_api_and_ends_at_logout(
    browser: Browser, provider: ScriptedProvider, echo_api: EchoApi
) -> None:
    callback = await browser.sign_in("/conversations")

    assert callback.status_code == 302
    assert callback.headers["location"] == browser.bff.url + "/conversations"
    user = await browser.user()
    assert user.status_code == 200
    claims = user.json()["claims"]
    assert claims["sub"] == provider.next_user["sub"]
    assert claims["email"] == provider.next_user["email"]
    api = await browser.api()
    assert api.status_code == 200
    assert api.json()["sub"] == provider.next_user["sub"]
    assert api.json()["kind"] == "user"
    assert api.json()["cookie_forwarded"] is False
    assert api.json()["csrf_forwarded"] is False
    logout = await browser.http.get(user.json()["logout_url"])
    assert logout.status_code == 303
    assert (await browser.user()).status_code == 401
    assert (await browser.api()).status_code == 401


async def test_authorization_request_uses_pkce_s256_state_nonce_and_the_api_audience(
    browser: Browser,
) -> None:
    login = await browser.start_login()
    params = query_of(login.headers["location"])

    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == browser.bff.url + "/bff/callback"
    assert params["scope"] == "openid profile email offline_access"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43
    assert len(params["nonce"]) >= 43
    assert params["resource"] == params["audience"] == DEFAULT_AUDIENCE


async def test_code_is_redeemed_with_the_verifier_and_the_api_audience(
    browser: Browser, provider: ScriptedProvider
) -> None:
    login = await browser.start_login()
    challenge = query_of(login.headers["location"])["code_challenge"]
    approved = await browser.http.get(login.headers["location"])
    await browser.http.get(approved.headers["location"])

    form = provider.token_requests[-1].form
    assert form["grant_type"] == "authorization_code"
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
    assert form["resource"] == form["audience"] == DEFAULT_AUDIENCE
    assert (provider.token_requests[-1].authorization or "").startswith("Basic ")
    assert "client_secret" not in form


async def test_login_state_is_single_use(browser: Browser) -> None:
    callback_url = await browser.authorize()
    assert (await browser.http.get(callback_url)).status_code == 302

    replayed = await browser.http.get(callback_url)

    assert replayed.status_code == 400
    assert "expired or was already used" in replayed.text


async def test_login_state_from_another_browser_is_refused(
    browser: Browser, bff: RunningBff
) -> None:
    callback_url = await browser.authorize()  # started in this browser …

    async with open_browser(bff) as other:
        stolen = await other.http.get(callback_url)  # … finished in another

    assert stolen.status_code == 400
    assert "another browser" in stolen.text
    assert other.session_cookie() is None
    # Taking the state also used it up: the victim's own callback fails too, safely.
    assert (await browser.http.get(callback_url)).status_code == 400


async def test_login_state_expires_by_itself(
    browser: Browser, bff: RunningBff, redis_url: str
) -> None:
    state = query_of((await browser.start_login()).headers["location"])["state"]

    client = redis.Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(f"{bff.settings.redis_namespace}:bff:login:{state}")
    finally:
        await client.aclose()
    assert 0 < ttl <= 600


async def test_login_cookie_binds_the_browser_and_is_lax_so_it_survives_the_redirect(
    browser: Browser,
) -> None:
    login = await browser.start_login()

    cookie = login.headers["set-cookie"]
    assert cookie.startswith("parley-login=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert "Max-Age=600" in cookie


async def test_each_sign_in_gets_a_new_session_id_and_ends_the_previous_session(
    browser: Browser,
) -> None:
    await browser.sign_in()
    first = browser.session_cookie()

    await browser.sign_in()
    second = browser.session_cookie()

    assert first
    assert second
    assert first != second
    async with open_browser(browser.bff) as attacker:
        attacker.http.cookies.set("parley-session", first)
        assert (await attacker.user()).status_code == 401
    assert (await browser.user()).status_code == 200


@pytest.mark.parametrize(
    "return_url",
    [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "/\t/evil.example",
        "evil.example",
    ],
)
async def test_return_url_that_could_leave_the_site_becomes_home(
    browser: Browser, return_url: str
) -> None:
    callback = await browser.sign_in(return_url)

    assert callback.headers["location"] == browser.bff.url + "/"


async def test_local_return_url_with_query_is_kept(browser: Browser) -> None:
    callback = await browser.sign_in("/conversations/42?tab=members")

    assert callback.headers["location"] == browser.bff.url + "/conversations/42?tab=members"


async def test_provider_error_callback_gives_a_clean_page(
    browser: Browser, provider: ScriptedProvider
) -> None:
    provider.behaviour.authorize_error = "access_denied"

    callback = await browser.sign_in()

    assert callback.status_code == 400
    assert callback.headers["content-type"].startswith("text/html")
    assert "Sign-in was cancelled or refused." in callback.text
    assert 'href="/bff/login"' in callback.text
    assert browser.session_cookie() is None


async def test_callback_without_any_parameters_gives_a_clean_page(browser: Browser) -> None:
    callback = await browser.http.get("/bff/callback")

    assert callback.status_code == 400
    assert callback.headers["content-type"].startswith("text/html")


async def test_unreachable_provider_at_login_gives_a_clean_page(
    redis_url: str, redis_namespace: str
) -> None:
    unreachable = "http://127.0.0.1:9"  # discard port: nothing listens
    environ = bff_environment(unreachable, redis_url, redis_namespace)
    async with running_bff(environ) as bff, httpx.AsyncClient(base_url=bff.url) as http:
        login = await http.get("/bff/login")

    assert login.status_code == 503
    assert login.headers["content-type"].startswith("text/html")


async def test_login_is_rate_limited_per_client_with_retry_after(
    provider: ScriptedProvider, redis_url: str, redis_namespace: str
) -> None:
    environ = bff_environment(
        provider.url, redis_url, redis_namespace + "-ratelimit", LOGIN_RATE_LIMIT="3/minute"
    )
    async with running_bff(environ) as bff, open_browser(bff) as browser:
        statuses = [(await browser.http.get("/bff/login")).status_code for _ in range(4)]
        limited = browser.responses[-1]
        client = redis.Redis.from_url(redis_url)
        try:
            async for key in client.scan_iter(match=f"{redis_namespace}-ratelimit:*"):
                await client.delete(key)
        finally:
            await client.aclose()

    assert statuses == [302, 302, 302, 429]
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_web_app_is_served_at_the_root_without_inline_script(browser: Browser) -> None:
    page = await browser.http.get("/")

    assert page.status_code == 200
    assert 'href="/bff/login"' in page.text
    assert "<script>" not in page.text
    assert "onclick" not in page.text
