"""Email verification by the mailed link: once, within 24 hours, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.identity_service.support import (
    DEFAULT_PASSWORD,
    Browser,
    IdentityFactory,
    IdentityServer,
    Login,
    Mailbox,
    claims_of,
    exchange_code,
    link_in,
    new_email,
    token_of,
)


@pytest.fixture
async def browser(mail_identity: IdentityServer) -> AsyncIterator[Browser]:
    browser = Browser(mail_identity.url)
    try:
        yield browser
    finally:
        await browser.aclose()


async def registered_link(browser: Browser, mailbox: Mailbox) -> tuple[str, str]:
    """Register a new address; (the address, the verification link mailed to it)."""
    address = new_email()
    form = await browser.open_form("/register")
    registered = await browser.submit_form(
        "/register", form, display_name="Ada", email=address, password=DEFAULT_PASSWORD
    )
    assert registered.status_code == 200
    return address, link_in(await mailbox.wait_for(address, "Verify"), "/verify")


async def test_the_link_verifies_the_address_once_and_says_so_when_followed_again(
    mail_identity: IdentityServer,
    factory: IdentityFactory,
    mailbox: Mailbox,
    browser: Browser,
    http: httpx.AsyncClient,
) -> None:
    address, link = await registered_link(browser, mailbox)

    first = await http.get(link)
    again = await http.get(link)

    assert first.status_code == 200
    assert "Your email address is verified" in first.text
    assert again.status_code == 200
    assert "already verified" in again.text
    account = await factory.stored_account(email=address)
    assert account is not None
    assert account.email_verified_at is not None
    # Tokens issued from now on say the address is verified.
    client = await factory.web_client()
    callback = await browser.sign_in(client, Login(address, DEFAULT_PASSWORD))
    tokens = (await exchange_code(http, mail_identity, client, callback)).json()
    assert claims_of(tokens["id_token"])["email_verified"] is True


async def test_an_expired_link_verifies_nothing(
    factory: IdentityFactory, mailbox: Mailbox, browser: Browser, http: httpx.AsyncClient
) -> None:
    address, link = await registered_link(browser, mailbox)
    account = await factory.stored_account(email=address)
    assert account is not None
    await factory.expire_mailed_links(account.id)

    answer = await http.get(link)

    assert answer.status_code == 400
    assert "This link has expired" in answer.text
    assert 'href="/reset"' in answer.text  # a reset link verifies the address too
    stored = await factory.stored_account(email=address)
    assert stored is not None
    assert stored.email_verified_at is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
        lambda token: token[:-1],
        lambda token: token + "\x00",
        lambda token: token * 300,
        lambda token: "",
    ],
    ids=["one-character-changed", "shortened", "nul", "ten-kilobytes", "empty"],
)
async def test_a_tampered_link_is_refused_cleanly(
    mail_identity: IdentityServer,
    factory: IdentityFactory,
    mailbox: Mailbox,
    browser: Browser,
    http: httpx.AsyncClient,
    tamper: Callable[[str], str],
) -> None:
    address, link = await registered_link(browser, mailbox)

    answer = await http.get(f"{mail_identity.url}/verify", params={"token": tamper(token_of(link))})

    assert answer.status_code == 400
    assert "This link is not valid" in answer.text
    account = await factory.stored_account(email=address)
    assert account is not None
    assert account.email_verified_at is None
