"""Steps of a person's journey through Parley that several end-to-end tests take."""

from __future__ import annotations

import httpx

from parley.seed import DEMO_PEOPLE
from tests.bff.conftest import Browser
from tests.e2e.conftest import Stack
from tests.identity_service.support import Login, form_inputs


def demo_person(stack: Stack, name: str) -> Login:
    """A seeded person, with the password the seeder printed for them."""
    email = next(email for email, display, _ in DEMO_PEOPLE if display == name)
    return Login(email, dict(stack.demo.people)[email])


async def open_sign_in_page(browser: Browser, stack: Stack, return_url: str) -> httpx.Response:
    """``/bff/login`` → identity_service's ``/authorize`` → its sign-in page."""
    login = await browser.start_login(return_url)
    authorize_url = login.headers["location"]
    assert authorize_url.startswith(f"{stack.identity.url}/authorize?"), authorize_url
    authorize = await browser.http.get(authorize_url)
    assert authorize.status_code == 303, authorize.text
    assert authorize.headers["location"].startswith("/login?")
    page = await browser.http.get(authorize.url.join(authorize.headers["location"]))
    assert page.status_code == 200, page.text
    return page


async def submit_sign_in(
    browser: Browser, stack: Stack, page: httpx.Response, person: Login
) -> httpx.Response:
    form = form_inputs(page.text) | {"identifier": person.identifier, "password": person.password}
    return await browser.http.post(f"{stack.identity.url}/login", data=form)


async def sign_in(
    browser: Browser, stack: Stack, person: Login, return_url: str = "/"
) -> httpx.Response:
    """The whole front channel, typing ``person``'s password; the BFF's answer to the callback."""
    page = await open_sign_in_page(browser, stack, return_url)
    to_callback = await submit_sign_in(browser, stack, page, person)
    assert to_callback.status_code == 303, to_callback.text
    callback_url = to_callback.headers["location"]
    assert callback_url.startswith(f"{stack.bff.url}/bff/callback?"), callback_url
    return await browser.http.get(callback_url)
