"""Password reset by a mailed link, end to end over real HTTP and real SMTP; and what is logged."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from identity_service.mail import OUTBOX_LOGGER
from tests.identity_service.conftest import ServerStarter
from tests.identity_service.support import (
    Browser,
    IdentityFactory,
    IdentityServer,
    LogoutReceiver,
    Mailbox,
    Person,
    exchange_code,
    form_inputs,
    link_in,
    new_email,
    new_mobile_number,
    refresh,
    token_of,
)

NEW_PASSWORD = "a brand new passphrase"
GENERIC_SIGN_IN_ERROR = "The email address or mobile number and password do not match."
DELIVERY_WAIT_SECONDS = 10.0


@pytest.fixture
async def browser(mail_identity: IdentityServer) -> AsyncIterator[Browser]:
    browser = Browser(mail_identity.url)
    try:
        yield browser
    finally:
        await browser.aclose()


async def request_reset(browser: Browser, identifier: str) -> httpx.Response:
    form = await browser.open_form("/reset")
    return await browser.submit_form("/reset", form, identifier=identifier)


async def mailed_reset_link(browser: Browser, mailbox: Mailbox, person: Person) -> str:
    assert person.account.email is not None
    assert (await request_reset(browser, person.identifier)).status_code == 200
    message = await mailbox.wait_for(person.account.email, "Choose a new Parley password")
    return link_in(message, "/reset/confirm")


async def choose_password(browser: Browser, link: str, password: str) -> httpx.Response:
    page = await browser.http.get(link)
    assert page.status_code == 200, page.text
    return await browser.submit_form("/reset/confirm", form_inputs(page.text), password=password)


async def password_works(
    browser: Browser, factory: IdentityFactory, person: Person, password: str
) -> bool:
    response, _, _ = await browser.authorize(await factory.web_client())
    form = await browser.open_sign_in_form(response)
    answer = await browser.submit_sign_in(form, person.identifier, password)
    assert answer.status_code in (303, 400), answer.text
    return answer.status_code == 303


# Loggers of the test's own peers: the SMTP server, and the HTTP client playing the browser
# (services keep httpx at WARNING: see servicekit.logging.configure_logging).
PEER_LOGGERS = ("mail.log", "httpx", "httpcore")


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything Parley's loggers were given (not what a formatter made of it), so a secret
    passed to a logger shows even where the formatter would have scrubbed it; except the
    development outbox, which logs mail deliberately and is tested on its own."""
    return "\n".join(
        f"{record.getMessage()} {vars(record)}"
        for record in caplog.records
        if not record.name.startswith((*PEER_LOGGERS, OUTBOX_LOGGER))
    )


async def test_a_reset_sets_the_new_password_and_signs_out_everywhere(
    mail_identity: IdentityServer,
    factory: IdentityFactory,
    mailbox: Mailbox,
    receiver: tuple[LogoutReceiver, str],
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    listener, backchannel_uri = receiver
    person = await factory.account(email=new_email(), verified=False)
    client = await factory.web_client(backchannel_logout_uri=backchannel_uri)
    laptop, phone = Browser(mail_identity.url), Browser(mail_identity.url)
    try:
        tokens = (
            await exchange_code(http, mail_identity, client, await laptop.sign_in(client, person))
        ).json()
        link = await mailed_reset_link(phone, mailbox, person)
        page = await phone.http.get(link)
        assert re.search(r'<input id="password"[^>]*autocomplete="new-password"', page.text)

        changed = await phone.submit_form(
            "/reset/confirm", form_inputs(page.text), password=NEW_PASSWORD
        )

        assert changed.status_code == 200
        assert "Your password has been changed" in changed.text
        await asyncio.wait_for(listener.received.wait(), DELIVERY_WAIT_SECONDS)
        assert (
            await refresh(http, mail_identity, client, tokens["refresh_token"])
        ).status_code == 400
        again, _, _ = await laptop.authorize(client)
        assert again.headers["location"].startswith("/login?"), "the laptop was signed out"
        assert not await password_works(phone, factory, person, person.password)
        assert await password_works(phone, factory, person, NEW_PASSWORD)
        stored = await factory.stored_account(email=person.account.email)
        assert stored is not None
        assert stored.email_verified_at is not None, "the link proved the address"
    finally:
        await laptop.aclose()
        await phone.aclose()
    assert token_of(link) not in logged_text(caplog)
    assert NEW_PASSWORD not in logged_text(caplog)


async def test_the_answer_is_the_same_whether_or_not_an_account_matches(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    number = new_mobile_number()
    person = await factory.account(email=new_email(), phone=number)
    assert person.account.email is not None
    unknown = new_email()

    known_answer = await request_reset(browser, person.identifier)
    unknown_answer = await request_reset(browser, unknown)
    by_number = await request_reset(browser, f"{number[:3]} {number[3:]}")

    assert known_answer.status_code == unknown_answer.status_code == by_number.status_code == 200
    assert known_answer.text.replace(person.account.email, "X") == unknown_answer.text.replace(
        unknown, "X"
    )
    # A mobile number leads to the account's email address; an unknown address to nothing.
    await mailbox.wait_for(person.account.email, "Choose a new Parley password")
    deadline = asyncio.get_running_loop().time() + DELIVERY_WAIT_SECONDS
    while len(mailbox.sent_to(person.account.email)) < 2:
        assert asyncio.get_running_loop().time() < deadline, "no mail for the number"
        await asyncio.sleep(0.02)
    assert mailbox.sent_to(unknown) == []


async def test_a_reset_link_works_once(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    person = await factory.account(email=new_email())
    link = await mailed_reset_link(browser, mailbox, person)
    form = form_inputs((await browser.http.get(link)).text)

    first = await browser.submit_form("/reset/confirm", form, password=NEW_PASSWORD)
    second = await browser.submit_form("/reset/confirm", form, password="yet another passphrase")
    revisited = await browser.http.get(link)

    assert first.status_code == 200
    for answer in (second, revisited):
        assert answer.status_code == 400
        assert "This link has expired or has been used" in answer.text
    assert await password_works(browser, factory, person, NEW_PASSWORD)


async def test_an_expired_reset_link_changes_nothing(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    person = await factory.account(email=new_email())
    link = await mailed_reset_link(browser, mailbox, person)
    form = form_inputs((await browser.http.get(link)).text)
    await factory.expire_mailed_links(person.account.id)

    page = await browser.http.get(link)
    submitted = await browser.submit_form("/reset/confirm", form, password=NEW_PASSWORD)

    assert page.status_code == submitted.status_code == 400
    assert await factory.stored_account(email=person.account.email) == person.account


async def test_the_new_password_must_meet_the_policy_and_the_link_survives_a_refusal(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    person = await factory.account(email=new_email())
    link = await mailed_reset_link(browser, mailbox, person)

    refused = await choose_password(browser, link, "password123")

    assert refused.status_code == 400
    assert 'id="password-error"' in refused.text
    assert "This password is too easy to guess." in refused.text
    assert (await choose_password(browser, link, NEW_PASSWORD)).status_code == 200


async def test_reset_forms_only_work_from_the_browser_that_loaded_them(
    mail_identity: IdentityServer, factory: IdentityFactory, mailbox: Mailbox, browser: Browser
) -> None:
    person = await factory.account(email=new_email())
    link = await mailed_reset_link(browser, mailbox, person)
    form = form_inputs((await browser.http.get(link)).text)

    async with httpx.AsyncClient(base_url=mail_identity.url) as other_browser:
        request_elsewhere = await other_browser.post(
            "/reset", data={"csrf_token": "f" * 64, "identifier": person.identifier}
        )
        confirm_elsewhere = await other_browser.post(
            "/reset/confirm", data={**form, "password": NEW_PASSWORD}
        )

    assert request_elsewhere.status_code == confirm_elsewhere.status_code == 403
    assert await factory.stored_account(email=person.account.email) == person.account


async def test_reset_requests_are_limited_whether_or_not_an_account_matches(
    start_identity_server: ServerStarter, factory: IdentityFactory, mailbox: Mailbox
) -> None:
    person = await factory.account(email=new_email())
    async with start_identity_server(
        SMTP_URL=mailbox.url, RESET_LIMITS_PER_IDENTIFIER="1 per minute"
    ) as identity:
        browser = Browser(identity.url)
        try:
            answers = [
                await request_reset(browser, identifier)
                for identifier in (person.identifier, person.identifier, "nobody@example.com")
            ]
            answers.append(await request_reset(browser, "nobody@example.com"))
        finally:
            await browser.aclose()

    assert [answer.status_code for answer in answers] == [200, 429, 200, 429]
    for throttled in (answers[1], answers[3]):
        assert 0 < int(throttled.headers["retry-after"]) <= 60
        assert "Too many reset requests" in throttled.text


async def test_in_development_without_smtp_the_link_is_logged_deliberately_and_only_there(
    start_identity_server: ServerStarter,
    factory: IdentityFactory,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    person = await factory.account(email=new_email())
    async with start_identity_server() as identity:
        browser = Browser(identity.url)
        try:
            assert (await request_reset(browser, person.identifier)).status_code == 200
            written = await _stderr_until(capsys, "/reset/confirm?token=")
        finally:
            await browser.aclose()

    found = re.search(r"/reset/confirm\?token=([A-Za-z0-9_-]{43})", written)
    assert found, written
    assert '"logger": "identity_service.mail.outbox"' in written
    assert found.group(1) not in logged_text(caplog)


async def _stderr_until(capsys: pytest.CaptureFixture[str], text: str) -> str:
    written = ""
    deadline = asyncio.get_running_loop().time() + DELIVERY_WAIT_SECONDS
    while text not in written and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        written += capsys.readouterr().err
    return written


# Plain SMTP on loopback: TLS would need a certificate the provider trusts, which is smtplib's.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_in_production_mail_goes_by_authenticated_smtp_and_no_token_is_logged(
    start_identity_server: ServerStarter,
    factory: IdentityFactory,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    person = await factory.account(email=new_email())
    assert person.account.email is not None

    def authenticate(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"parley",
            b"p@ss:word",
        )
        return AuthResult(success=ok)

    with Mailbox(auth_required=True, auth_require_tls=False, authenticator=authenticate) as mailbox:
        async with (
            start_identity_server(
                PARLEY_ENV="production",
                API_AUDIENCE="parley-api",
                PASSWORD_HASH_PROFILE="standard",
                IDENTITY_SESSION_SECRET="a-production-secret-of-at-least-32-characters",
                SMTP_URL=f"smtp://parley:p%40ss%3Aword@127.0.0.1:{mailbox.port}",
            ) as identity,
            httpx.AsyncClient(base_url=identity.url) as http,
        ):
            page = await http.get("/reset")
            # The cookie is Secure, which an http:// client does not send back on its own.
            cookie = page.headers["set-cookie"].split(";")[0]
            assert cookie.startswith("__Host-parley_idp_browser=")
            answer = await http.post(
                "/reset",
                data={**form_inputs(page.text), "identifier": person.identifier},
                headers={"Cookie": cookie},
            )
            assert answer.status_code == 200
            message = await mailbox.wait_for(person.account.email, "Choose a new")

    token = token_of(link_in(message, "/reset/confirm"))
    assert message["From"] == "Parley <no-reply@127.0.0.1>"
    assert token not in logged_text(caplog)
    assert token not in capsys.readouterr().err
    assert not [record for record in caplog.records if record.name == OUTBOX_LOGGER]
