"""Registration over real HTTP: the page, the rules, what it reveals (nothing), what it mails."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.identity_service.conftest import ServerStarter
from tests.identity_service.support import (
    DEFAULT_PASSWORD,
    Browser,
    IdentityFactory,
    IdentityServer,
    Mailbox,
    callback_of,
    claims_of,
    exchange_code,
    form_inputs,
    link_in,
    new_email,
    new_mobile_number,
    query_of,
)

NUL = "\x00"


@pytest.fixture
async def browser(mail_identity: IdentityServer) -> AsyncIterator[Browser]:
    browser = Browser(mail_identity.url)
    try:
        yield browser
    finally:
        await browser.aclose()


async def register(browser: Browser, **fields: str) -> httpx.Response:
    """Fill in /register as a person would; fields not given are left empty."""
    form = await browser.open_form("/register")
    details = {"display_name": "Ada Lovelace", "password": DEFAULT_PASSWORD, **fields}
    return await browser.submit_form("/register", form, **details)


async def test_the_registration_page_is_accessible_and_runs_no_script(browser: Browser) -> None:
    page = await browser.http.get("/register")
    html = page.text

    assert page.status_code == 200
    assert '<html lang="en">' in html
    for field, autocomplete in [
        ("display_name", "name"),
        ("email", "email"),
        ("phone", "tel"),
        ("password", "new-password"),
    ]:
        assert f'<label for="{field}">' in html
        assert re.search(rf'<input id="{field}"[^>]*autocomplete="{autocomplete}"', html)
    assert 'aria-describedby="password-hint"' in html
    assert "<script" not in html
    assert " style=" not in html
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "form-action 'self';" in policy


async def test_registering_from_the_sign_in_page_leads_back_to_it_unverified(
    mail_identity: IdentityServer,
    factory: IdentityFactory,
    mailbox: Mailbox,
    browser: Browser,
    http: httpx.AsyncClient,
) -> None:
    client = await factory.web_client()
    response, parameters, pkce = await browser.authorize(client)
    sign_in_page = await browser.http.get(response.headers["location"])
    pending_id = form_inputs(sign_in_page.text)["request"]
    assert f'href="/register?request={pending_id}"' in sign_in_page.text
    assert f'href="/reset?request={pending_id}"' in sign_in_page.text
    address = new_email()

    form = await browser.open_form("/register", request=pending_id)
    registered = await browser.submit_form(
        "/register",
        form,
        display_name="  Ada   Lovelace ",
        email=address,
        password=DEFAULT_PASSWORD,
    )

    assert registered.status_code == 200
    assert "Check your inbox" in registered.text
    assert address in registered.text
    continue_to = f"/login?request={pending_id}"
    assert f'href="{continue_to}"' in registered.text
    message = await mailbox.wait_for(address, "Verify your email address")
    assert "Hello Ada Lovelace" in message.get_content()
    assert link_in(message, "/verify").startswith(f"{mail_identity.url}/verify?token=")
    account = await factory.stored_account(email=address)
    assert account is not None
    assert account.display_name == "Ada Lovelace"
    assert account.email_verified_at is None
    # Unverified accounts may sign in; their tokens say so.
    sign_in_form = await browser.open_form(continue_to)
    answer = await browser.submit_sign_in(sign_in_form, address, DEFAULT_PASSWORD)
    callback = callback_of(answer, parameters, pkce)
    tokens = (await exchange_code(http, mail_identity, client, callback)).json()
    claims = claims_of(tokens["id_token"])
    assert (claims["sub"], claims["email"], claims["email_verified"]) == (
        str(account.id),
        address,
        False,
    )


async def test_a_mobile_number_alone_registers_an_unverified_number(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    number = new_mobile_number()
    spaced = f"{number[:3]} {number[3]} {number[4:6]} {number[6:8]} {number[8:10]} {number[10:]}"

    registered = await register(browser, phone=spaced)

    assert registered.status_code == 200
    assert "We can&#39;t verify mobile numbers yet" in registered.text
    account = await factory.stored_account(phone=number)
    assert account is not None
    assert (account.email, account.phone_verified_at) == (None, None)
    assert not [message for message in mailbox.messages if number in message.get_content()]


async def test_an_email_and_a_number_register_together_normalised(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    address, number = new_email(), new_mobile_number()

    registered = await register(browser, email=f"  {address.upper()} ", phone=number)

    assert registered.status_code == 200
    account = await factory.stored_account(email=address)
    assert account is not None
    assert account.phone == number
    await mailbox.wait_for(address, "Verify your email address")


async def test_a_taken_address_or_number_in_any_spelling_reveals_nothing_and_tells_the_owner(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    owner_email, owner_number = new_email(), new_mobile_number()
    owner = await factory.account(email=owner_email, phone=owner_number)
    fresh = new_email()

    new_page = await register(browser, email=fresh, password="a different passphrase")
    taken_email = await register(
        browser, email=f" {owner_email.upper()}", password="a different passphrase"
    )
    taken_number = await register(browser, phone=f"{owner_number[:3]} {owner_number[3:]}")

    assert new_page.status_code == taken_email.status_code == taken_number.status_code == 200
    assert _page_text(new_page, fresh) == _page_text(taken_email, owner_email)
    for taken in ("email address", "mobile number"):
        notice = await mailbox.wait_for(owner_email, f"Someone tried to register with your {taken}")
        assert "/reset" in notice.get_content()
    subjects = [message["Subject"] for message in mailbox.sent_to(owner_email)]
    assert not [subject for subject in subjects if "Verify" in subject]
    # Nothing changed: no second account, and the password typed again was not stored.
    assert await factory.stored_account(email=owner_email) == owner.account


def _page_text(response: httpx.Response, address: str) -> str:
    """The page without the address it names and the random values in it."""
    return re.sub(r'value="[A-Za-z0-9_-]{20,}"', "", response.text.replace(address, "X"))


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("too short", "Use at least 10 characters."),
        ("Password2024!", "This password is too easy to guess."),
        ("Ada Lovelace", "Do not use your email address, mobile number or name"),
        ("x" * 129, "Use at most 128 characters."),
    ],
)
async def test_passwords_breaking_the_policy_are_explained_beside_the_field(
    factory: IdentityFactory, browser: Browser, password: str, reason: str
) -> None:
    address = new_email()

    refused = await register(browser, email=address, password=password)

    assert refused.status_code == 400
    html = refused.text
    assert reason in html
    assert 'id="password-error"' in html
    assert re.search(r'<input id="password"[^>]*aria-invalid="true"', html)
    assert 'aria-describedby="password-hint password-error"' in html
    assert 'role="alert"' in html  # the error summary, which links to the field
    assert 'href="#password"' in html
    assert f'value="{address}"' in html  # what was typed stays, except the password
    assert not re.search(r'<input id="password"[^>]*value=', html)
    assert await factory.stored_account(email=address) is None


async def test_the_form_only_works_from_the_browser_that_loaded_it(
    mail_identity: IdentityServer, factory: IdentityFactory, browser: Browser
) -> None:
    form = await browser.open_form("/register")
    address = new_email()
    details = {"display_name": "Ada", "email": address, "password": DEFAULT_PASSWORD}

    without_token = await browser.submit_form("/register", {**form, "csrf_token": ""}, **details)
    tampered = await browser.submit_form("/register", {**form, "csrf_token": "f" * 64}, **details)
    async with httpx.AsyncClient(base_url=mail_identity.url) as other_browser:
        from_elsewhere = await other_browser.post("/register", data={**form, **details})

    for answer in (without_token, tampered, from_elsewhere):
        assert answer.status_code == 403
        assert "This form has expired" in answer.text
    assert await factory.stored_account(email=address) is None


async def test_registrations_are_limited_per_address_and_per_client(
    start_identity_server: ServerStarter, mailbox: Mailbox, factory: IdentityFactory
) -> None:
    first, second, third, fourth = (new_email() for _ in range(4))
    async with start_identity_server(
        SMTP_URL=mailbox.url,
        REGISTRATION_LIMITS_PER_IDENTIFIER="1 per minute",
        REGISTRATION_LIMITS_PER_ADDRESS="3 per minute",
    ) as identity:
        browser = Browser(identity.url)
        try:
            answers = [
                await register(browser, email=address)
                for address in (first, first, second, third, fourth)
            ]
        finally:
            await browser.aclose()

    assert [answer.status_code for answer in answers] == [200, 429, 200, 200, 429]
    for throttled in (answers[1], answers[4]):
        assert 0 < int(throttled.headers["retry-after"]) <= 60
        assert "Too many registrations" in throttled.text
    assert await factory.stored_account(email=fourth) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"display_name": "Ada" + NUL},
        {"display_name": "\u202eecila"},  # right-to-left override
        {"display_name": "Ada\u200bLovelace"},  # zero-width space
        {"display_name": "A" * 10_000},
        {"email": "ada" + NUL + "@example.com"},
        {"email": "a" * 10_000 + "@example.com"},
        {"phone": "+44" + "7" * 10_000},
        {"password": "correct horse" + NUL},
        {"password": "p" * 10_000},
    ],
    ids=lambda fields: f"{next(iter(fields))}-{len(next(iter(fields.values())))}",
)
async def test_hostile_input_gets_a_clean_page_and_stores_nothing(
    factory: IdentityFactory, browser: Browser, fields: dict[str, str]
) -> None:
    address = new_email()

    refused = await register(browser, **{"email": address, **fields})

    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in refused.text
    assert await factory.stored_account(email=address) is None


async def test_an_oversized_form_is_refused(browser: Browser) -> None:
    form = await browser.open_form("/register")

    refused = await browser.submit_form("/register", form, display_name="A" * 20_000)

    assert refused.status_code == 400
    assert "This form could not be read" in refused.text


async def test_passwords_are_one_in_any_unicode_form(
    mail_identity: IdentityServer, factory: IdentityFactory, browser: Browser
) -> None:
    address = new_email()
    # "ﬁ" (one character, U+FB01) is typed; "fi" (two) signs in: NFKC makes them one password.
    registered = await register(browser, email=address, password="ﬁne words, ﬁne deeds")
    assert registered.status_code == 200
    client = await factory.web_client()
    response, parameters, pkce = await browser.authorize(client)
    form = await browser.open_sign_in_form(response)

    answer = await browser.submit_sign_in(form, address, "fine words, fine deeds")

    assert query_of(callback_of(answer, parameters, pkce).url)["code"]
