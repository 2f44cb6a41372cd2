"""The sign-in page: accessible HTML under a strict CSP, CSRF, generic errors and throttling."""

from __future__ import annotations

import re
import secrets

import httpx

from identity_service.admin import disable_user
from tests.identity_service.conftest import ServerStarter
from tests.identity_service.support import (
    Browser,
    IdentityFactory,
    IdentityServer,
    callback_of,
)

GENERIC_ERROR = "The email address or mobile number and password do not match."


async def sign_in_page(browser: Browser, factory: IdentityFactory) -> httpx.Response:
    response, _, _ = await browser.authorize(await factory.web_client())
    return await browser.http.get(response.headers["location"])


async def test_the_sign_in_page_is_accessible_and_runs_no_script(
    factory: IdentityFactory, browser: Browser
) -> None:
    page = await sign_in_page(browser, factory)
    html = page.text

    assert page.status_code == 200
    assert '<html lang="en">' in html
    for field in ("identifier", "password"):
        assert f'<label for="{field}">' in html
        assert f'id="{field}"' in html
    assert 'autocomplete="username"' in html
    assert 'autocomplete="current-password"' in html
    assert "<script" not in html
    assert " style=" not in html
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "form-action 'self' http://127.0.0.1:9" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    stylesheet = await browser.http.get("/static/identity.css")
    assert stylesheet.status_code == 200


async def test_wrong_password_and_unknown_account_look_the_same(
    factory: IdentityFactory, browser: Browser
) -> None:
    account = await factory.account()
    client = await factory.web_client()
    answers = []
    for identifier, password in [
        (account.identifier, "wrong password entirely"),
        ("nobody-here@example.com", "wrong password entirely"),
    ]:
        response, _, _ = await browser.authorize(client)
        form = await browser.open_sign_in_form(response)
        answers.append(await browser.submit_sign_in(form, identifier, password))

    wrong_password, unknown = answers
    for answer in answers:
        assert answer.status_code == 400
        assert GENERIC_ERROR in answer.text
        assert 'role="alert"' in answer.text
        assert 'aria-describedby="form-error"' in answer.text
        assert "wrong password entirely" not in answer.text
        assert "parley_idp=" not in answer.headers.get("set-cookie", "")
    assert _without_tokens(wrong_password.text).replace(account.identifier, "X") == (
        _without_tokens(unknown.text).replace("nobody-here@example.com", "X")
    )


def _without_tokens(html: str) -> str:
    """``html`` without its per-request random values: form tokens and pending-request ids."""
    return re.sub(r'(value="|request=)[A-Za-z0-9_-]{20,}', r"\1", html)


async def test_empty_fields_are_named_next_to_the_field(
    factory: IdentityFactory, browser: Browser
) -> None:
    response, _, _ = await browser.authorize(await factory.web_client())
    form = await browser.open_sign_in_form(response)

    answer = await browser.submit_sign_in(form, "", "")

    assert answer.status_code == 400
    assert 'id="identifier-error"' in answer.text
    assert 'aria-describedby="identifier-error"' in answer.text
    assert 'aria-describedby="password-error"' in answer.text


async def test_sign_in_with_a_mobile_number(factory: IdentityFactory, browser: Browser) -> None:
    digits = f"1{secrets.randbelow(10**7):07d}"  # a French mobile number: +33 6 1…
    account = await factory.account(phone=f"+336{digits}")
    client = await factory.web_client()
    response, parameters, pkce = await browser.authorize(client)
    form = await browser.open_sign_in_form(response)
    spaced = "+33 6 " + " ".join(digits[i : i + 2] for i in range(0, 8, 2))

    answer = await browser.submit_sign_in(form, spaced, account.password)

    assert callback_of(answer, parameters, pkce).code


async def test_a_disabled_account_cannot_sign_in(
    factory: IdentityFactory, browser: Browser, database_url: str
) -> None:
    account = await factory.account()
    await disable_user(database_url, account.identifier)
    response, _, _ = await browser.authorize(await factory.web_client())
    form = await browser.open_sign_in_form(response)

    answer = await browser.submit_sign_in(form, account.identifier, account.password)

    assert answer.status_code == 400
    assert GENERIC_ERROR in answer.text


async def test_the_form_only_works_from_the_browser_that_loaded_it(
    identity: IdentityServer, factory: IdentityFactory, browser: Browser
) -> None:
    account = await factory.account()
    response, _, _ = await browser.authorize(await factory.web_client())
    form = await browser.open_sign_in_form(response)
    credentials = {"identifier": account.identifier, "password": account.password}

    without_token = await browser.http.post(
        "/login", data={**form, "csrf_token": "", **credentials}
    )
    async with httpx.AsyncClient(base_url=identity.url) as other_browser:
        from_elsewhere = await other_browser.post("/login", data={**form, **credentials})
    tampered = await browser.http.post(
        "/login", data={**form, "csrf_token": "f" * 64, **credentials}
    )

    for answer in (without_token, from_elsewhere, tampered):
        assert answer.status_code == 403
        assert "parley_idp=" not in answer.headers.get("set-cookie", "")


async def test_the_session_cookie_is_distinct_httponly_lax_and_signed(
    factory: IdentityFactory, browser: Browser
) -> None:
    account = await factory.account()
    response, _, _ = await browser.authorize(await factory.web_client())
    form = await browser.open_sign_in_form(response)

    answer = await browser.submit_sign_in(form, account.identifier, account.password)

    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("parley_idp="))
    attributes = cookie.lower()
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "domain=" not in attributes
    value = cookie.split(";")[0].split("=", 1)[1]
    assert "." in value, "signed"


async def test_repeated_failures_are_throttled_with_a_retry_after(
    start_identity_server: ServerStarter, factory: IdentityFactory
) -> None:
    account = await factory.account()
    async with start_identity_server(LOGIN_LIMITS_PER_ACCOUNT="3 per minute") as identity:
        browser = Browser(identity.url)
        try:
            statuses = []
            for _ in range(4):
                response, _, _ = await browser.authorize(await factory.web_client())
                form = await browser.open_sign_in_form(response)
                answer = await browser.submit_sign_in(form, account.identifier, "not the password")
                statuses.append(answer.status_code)
            response, _, _ = await browser.authorize(await factory.web_client())
            form = await browser.open_sign_in_form(response)
            correct_but_throttled = await browser.submit_sign_in(
                form, account.identifier, account.password
            )
        finally:
            await browser.aclose()

    assert statuses == [400, 400, 400, 429]
    assert correct_but_throttled.status_code == 429
    assert 0 < int(correct_but_throttled.headers["retry-after"]) <= 60
    assert "Too many sign-in attempts" in correct_but_throttled.text


async def test_one_address_failing_across_many_accounts_is_throttled(
    start_identity_server: ServerStarter, factory: IdentityFactory
) -> None:
    async with start_identity_server(LOGIN_LIMITS_PER_ADDRESS="2 per minute") as identity:
        browser = Browser(identity.url)
        try:
            statuses = []
            for attempt in range(3):
                response, _, _ = await browser.authorize(await factory.web_client())
                form = await browser.open_sign_in_form(response)
                answer = await browser.submit_sign_in(
                    form, f"sprayed-{attempt}@example.com", "not the password"
                )
                statuses.append(answer.status_code)
        finally:
            await browser.aclose()

    assert statuses == [400, 400, 429]
