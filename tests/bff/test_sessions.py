"""Sessions: what the cookie is and holds, what /bff/user shows, and when a session times out."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import redis.asyncio as redis
from itsdangerous import TimestampSigner

from tests.bff.conftest import Browser, RunningBff, isolated_bff, open_browser
from tests.bff.scripted_provider import ScriptedProvider

SECURE_PUBLIC_URL = "https://chat.example.test"


def cookie_attributes(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    """Name, value and attributes (lower-cased names) of one Set-Cookie header value."""
    first, *attributes = [part.strip() for part in set_cookie.split(";")]
    name, _, value = first.partition("=")
    parsed = {}
    for attribute in attributes:
        key, _, attribute_value = attribute.partition("=")
        parsed[key.lower()] = attribute_value
    return name, value, parsed


async def test_session_cookie_is_httponly_strict_host_wide_and_small(browser: Browser) -> None:
    callback = await browser.sign_in()

    name, _value, attributes = cookie_attributes(callback.headers["set-cookie"])
    assert name == "parley-session"  # plain HTTP on loopback: development, so no __Host-
    assert "httponly" in attributes
    assert attributes["samesite"] == "strict"
    assert attributes["path"] == "/"
    assert "domain" not in attributes
    assert "secure" not in attributes
    assert int(attributes["max-age"]) == browser.bff.settings.session_absolute_timeout_seconds
    assert len(callback.headers["set-cookie"]) < 256  # far below the 4 KB cookie limit


async def test_session_cookie_holds_only_a_signed_random_id(browser: Browser) -> None:
    await browser.sign_in()
    cookie = browser.session_cookie()
    assert cookie is not None

    signer = TimestampSigner(
        browser.bff.settings.session_secret, salt="parley.bff.session", digest_method=hashlib.sha256
    )
    session_id = signer.unsign(cookie).decode()
    assert len(session_id) >= 22  # ≥128 bits in URL-safe base64
    assert "eyJ" not in cookie


async def test_a_cookie_with_a_bad_signature_is_not_a_session(browser: Browser) -> None:
    await browser.sign_in()
    cookie = browser.session_cookie()
    assert cookie is not None
    session_id, _, signature = cookie.partition(".")

    async with open_browser(browser.bff) as forger:
        forger.http.cookies.set("parley-session", session_id + "." + signature[::-1])
        assert (await forger.user()).status_code == 401


async def test_secure_public_url_gives_host_prefixed_secure_cookies_and_hsts(
    redis_url: str, redis_namespace: str
) -> None:
    # The browser sends Secure cookies only over HTTPS; play that part by hand over HTTP.
    secure = isolated_bff(redis_url, redis_namespace, PUBLIC_URL=SECURE_PUBLIC_URL)
    async with secure as (provider, bff), httpx.AsyncClient(base_url=bff.url) as http:
        login = await http.get("/bff/login")
        login_name, login_value, login_attributes = cookie_attributes(login.headers["set-cookie"])
        approved = await http.get(login.headers["location"])
        callback_url = urlsplit(approved.headers["location"])
        assert callback_url.netloc == "chat.example.test"
        callback = await http.get(
            f"/bff/callback?{callback_url.query}",
            headers={"Cookie": f"{login_name}={login_value}"},
        )

    assert login_name == "__Host-parley-login"
    assert "secure" in login_attributes
    assert login_attributes["samesite"] == "lax"
    name, _, attributes = cookie_attributes(callback.headers["set-cookie"])
    assert name == "__Host-parley-session"
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes["samesite"] == "strict"
    assert attributes["path"] == "/"
    assert "domain" not in attributes
    assert callback.headers["location"] == SECURE_PUBLIC_URL + "/"
    assert callback.headers["strict-transport-security"].startswith("max-age=")
    assert provider.authorize_requests[0]["redirect_uri"] == SECURE_PUBLIC_URL + "/bff/callback"


async def test_plain_http_development_sends_no_hsts(browser: Browser) -> None:
    page = await browser.http.get("/")

    assert "strict-transport-security" not in page.headers


async def test_user_shows_profile_claims_logout_url_and_expiry_but_no_token(
    browser: Browser, provider: ScriptedProvider
) -> None:
    await browser.sign_in()

    user = await browser.user()

    document = user.json()
    assert set(document) == {"claims", "logout_url", "expires_at", "idle_expires_at"}
    assert document["claims"] == provider.next_user
    assert "sid" not in document["claims"]
    assert "nonce" not in document["claims"]
    logout = urlsplit(document["logout_url"])
    assert logout.path == "/bff/logout"
    assert parse_qs(logout.query)["sid"][0]
    assert "eyJ" not in user.text


async def test_user_is_401_problem_when_anonymous(browser: Browser) -> None:
    user = await browser.user()

    assert user.status_code == 401
    assert user.headers["content-type"] == "application/problem+json"


async def test_session_ends_after_the_idle_timeout(browser: Browser, bff: RunningBff) -> None:
    await browser.sign_in()
    idle = bff.settings.session_idle_timeout_seconds

    bff.clock.advance(idle - 60)
    assert (await browser.user()).status_code == 200  # activity restarts the idle clock
    bff.clock.advance(idle - 60)
    assert (await browser.user()).status_code == 200
    bff.clock.advance(idle + 1)
    assert (await browser.user()).status_code == 401


async def test_session_ends_at_the_absolute_timeout_however_active(
    browser: Browser, bff: RunningBff, redis_url: str
) -> None:
    await browser.sign_in()
    cookie = browser.session_cookie()
    assert cookie is not None
    step = bff.settings.session_idle_timeout_seconds // 2

    elapsed = 0
    while elapsed + step < bff.settings.session_absolute_timeout_seconds:
        bff.clock.advance(step)
        elapsed += step
        assert (await browser.user()).status_code == 200
    bff.clock.advance(step)

    assert (await browser.user()).status_code == 401
    session_id = cookie.split(".")[0]
    client = redis.Redis.from_url(redis_url)
    try:
        assert not await client.exists(f"{bff.settings.redis_namespace}:bff:session:{session_id}")
    finally:
        await client.aclose()


async def test_session_key_in_redis_expires_with_the_idle_timeout(
    browser: Browser, bff: RunningBff, redis_url: str
) -> None:
    await browser.sign_in()
    cookie = browser.session_cookie()
    assert cookie is not None

    client = redis.Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(f"{bff.settings.redis_namespace}:bff:session:{cookie.split('.')[0]}")
    finally:
        await client.aclose()
    assert 0 < ttl <= bff.settings.session_idle_timeout_seconds


async def test_session_without_refresh_token_ends_with_its_access_token(
    browser: Browser, bff: RunningBff, provider: ScriptedProvider
) -> None:
    provider.behaviour.issue_refresh_tokens = False
    await browser.sign_in()
    assert (await browser.api()).status_code == 200

    bff.clock.advance(provider.behaviour.access_token_lifetime_seconds + 1)

    assert (await browser.api()).status_code == 401
    assert (await browser.user()).status_code == 401
