"""Test helpers for identity_service: factories, a cookie-keeping browser, the OAuth steps, a
real SMTP server and a back-channel logout receiver.

browser = Browser(identity.url)
callback = await browser.sign_in(client, account)          # /authorize → form → code
tokens = await exchange_code(http, identity, client, callback)
message = await mailbox.wait_for(address, "Verify")         # what the provider mailed
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
from aiosmtpd.controller import Controller
from joserfc import jws
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from identity_service.clients import WEB_CLIENT_SCOPES, ClientKind, ClientStore, NewClient
from identity_service.clock import utc_now
from identity_service.identifiers import LoginIdentifier
from identity_service.passwords import Passwords
from identity_service.service import create_account
from identity_service.settings import IdentitySettings
from identity_service.store import Account, AccountStore
from identity_service.tables import account_tokens
from servicekit.db import Database
from tests.support.servers import free_port

DEFAULT_PASSWORD = "correct horse battery"
CALLBACK_HOST = "http://127.0.0.1:9"  # nothing listens: the browser never follows the redirect
# Seconds to wait for a message the provider sends after its response (a background task).
MAIL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class IdentityServer:
    url: str
    settings: IdentitySettings

    @property
    def audience(self) -> str:
        return self.settings.api_audience


@dataclass(frozen=True)
class Login:
    """What a person types into the sign-in form."""

    identifier: str
    password: str


@dataclass(frozen=True)
class Person(Login):
    account: Account

    @property
    def id(self) -> str:
        return str(self.account.id)


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    secret: str
    redirect_uri: str = ""
    post_logout_redirect_uri: str = ""

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.client_id, self.secret)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class IdentityFactory:
    """Accounts and clients made directly in the database, each with unique identifiers."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._accounts = AccountStore(database)
        self._clients = ClientStore(database)
        self._passwords = Passwords("fast")

    async def account(
        self,
        *,
        name: str = "Ada Example",
        email: str | None = None,
        phone: str | None = None,
        password: str = DEFAULT_PASSWORD,
        verified: bool = True,
    ) -> Person:
        if email is None and phone is None:
            email = unique("ada") + "@example.com"
        account = await create_account(
            self._accounts,
            self._passwords,
            email=email,
            phone=phone,
            display_name=name,
            password=password,
            verified=verified,
            now=utc_now(),
        )
        return Person(identifier=email or phone or "", password=password, account=account)

    async def stored_account(
        self, *, email: str | None = None, phone: str | None = None
    ) -> Account | None:
        """The account stored with this normalised email address or mobile number."""
        if email is not None:
            return await self._accounts.find_account(LoginIdentifier("email", email))
        assert phone is not None
        return await self._accounts.find_account(LoginIdentifier("phone", phone))

    async def expire_mailed_links(self, account_id: uuid.UUID) -> None:
        """Make every link mailed to the account a second past its expiry."""
        statement = (
            update(account_tokens)
            .where(account_tokens.c.account_id == account_id)
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(statement)

        await self._database.transaction(work)

    async def web_client(
        self,
        *,
        first_party: bool = True,
        backchannel_logout_uri: str | None = None,
    ) -> RegisteredClient:
        client_id = unique("web")
        client = RegisteredClient(
            client_id,
            secrets.token_urlsafe(24),
            redirect_uri=f"{CALLBACK_HOST}/{client_id}/callback",
            post_logout_redirect_uri=f"{CALLBACK_HOST}/{client_id}/signed-out",
        )
        await self._clients.create_client(
            NewClient(
                client_id=client_id,
                secret=client.secret,
                kind="web",
                redirect_uris=(client.redirect_uri,),
                post_logout_redirect_uris=(client.post_logout_redirect_uri,),
                backchannel_logout_uri=backchannel_logout_uri,
                scopes=WEB_CLIENT_SCOPES,
                first_party=first_party,
            ),
            utc_now(),
        )
        return client

    async def machine_client(
        self, scopes: tuple[str, ...] = ("chat.read", "chat.write")
    ) -> RegisteredClient:
        client = RegisteredClient(unique("bot"), secrets.token_urlsafe(24))
        kind: ClientKind = "machine"
        await self._clients.create_client(
            NewClient(client_id=client.client_id, secret=client.secret, kind=kind, scopes=scopes),
            utc_now(),
        )
        return client


@dataclass
class Pkce:
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class Callback:
    """Where the provider sent the browser back to the client, and with what."""

    url: str
    parameters: dict[str, str]
    pkce: Pkce
    nonce: str
    redirect_uri: str

    @property
    def code(self) -> str:
        return self.parameters["code"]


class FormParser(HTMLParser):
    """The inputs of a page's forms, by name (the last form's value wins)."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.actions: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.actions.append(attributes.get("action") or "")
        if tag == "input" and attributes.get("name"):
            self.inputs[str(attributes["name"])] = attributes.get("value") or ""


def form_inputs(html: str) -> dict[str, str]:
    parser = FormParser()
    parser.feed(html)
    return parser.inputs


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


class Browser:
    """A browser: keeps cookies, never runs scripts, follows nothing on its own."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.http = httpx.AsyncClient(base_url=issuer, follow_redirects=False, timeout=10.0)

    async def aclose(self) -> None:
        await self.http.aclose()

    def authorization_parameters(
        self, client: RegisteredClient, pkce: Pkce, nonce: str, **overrides: str | None
    ) -> dict[str, str]:
        parameters: dict[str, str | None] = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "scope": "openid profile email offline_access",
            "state": secrets.token_urlsafe(16),
            "nonce": nonce,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "resource": "parley-api",
        }
        parameters.update(overrides)
        return {name: value for name, value in parameters.items() if value is not None}

    async def authorize(
        self, client: RegisteredClient, pkce: Pkce | None = None, **overrides: str | None
    ) -> tuple[httpx.Response, dict[str, str], Pkce]:
        pkce = pkce or Pkce()
        parameters = self.authorization_parameters(
            client, pkce, secrets.token_urlsafe(16), **overrides
        )
        response = await self.http.get("/authorize", params=parameters)
        return response, parameters, pkce

    async def open_sign_in_form(self, response: httpx.Response) -> dict[str, str]:
        """Follow /authorize's redirect to the sign-in page; the form's inputs."""
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/login?"), location
        page = await self.http.get(location)
        assert page.status_code == 200, page.text
        return form_inputs(page.text)

    async def submit_sign_in(
        self, form: dict[str, str], identifier: str, password: str
    ) -> httpx.Response:
        return await self.http.post(
            "/login", data={**form, "identifier": identifier, "password": password}
        )

    async def open_form(self, path: str, **params: str) -> dict[str, str]:
        """GET a page with a form; the form's inputs."""
        page = await self.http.get(path, params=params or None)
        assert page.status_code == 200, page.text
        return form_inputs(page.text)

    async def submit_form(self, path: str, form: dict[str, str], **fields: str) -> httpx.Response:
        return await self.http.post(path, data={**form, **fields})

    async def sign_in(
        self, client: RegisteredClient, account: Login, **overrides: str | None
    ) -> Callback:
        """The whole front channel: /authorize, the sign-in form, back to the client."""
        response, parameters, pkce = await self.authorize(client, **overrides)
        if response.status_code == 303:
            form = await self.open_sign_in_form(response)
            response = await self.submit_sign_in(form, account.identifier, account.password)
        return callback_of(response, parameters, pkce)


def callback_of(response: httpx.Response, parameters: dict[str, str], pkce: Pkce) -> Callback:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(parameters["redirect_uri"] + "?"), location
    return Callback(
        location, query_of(location), pkce, parameters.get("nonce", ""), parameters["redirect_uri"]
    )


async def exchange_code(
    http: httpx.AsyncClient,
    identity: IdentityServer,
    client: RegisteredClient,
    callback: Callback,
    **overrides: str | None,
) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": callback.code,
        "redirect_uri": callback.redirect_uri,
        "code_verifier": callback.pkce.verifier,
    }
    form.update(overrides)
    return await http.post(
        f"{identity.url}/token",
        data={name: value for name, value in form.items() if value is not None},
        auth=client.auth,
    )


async def refresh(
    http: httpx.AsyncClient, identity: IdentityServer, client: RegisteredClient, refresh_token: str
) -> httpx.Response:
    return await http.post(
        f"{identity.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=client.auth,
    )


async def client_credentials(
    http: httpx.AsyncClient, identity: IdentityServer, client: RegisteredClient, **form: str
) -> httpx.Response:
    return await http.post(
        f"{identity.url}/token", data={"grant_type": "client_credentials", **form}, auth=client.auth
    )


def header_of(token: str) -> dict[str, Any]:
    return dict(jws.extract_compact(token.encode()).headers())


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (tests verify signatures separately)."""
    claims: dict[str, Any] = json.loads(jws.extract_compact(token.encode()).payload)
    return claims


class Mailbox:
    """A real SMTP server (aiosmtpd, serving from a thread of its own) that keeps every message
    it is sent. Keyword arguments go to aiosmtpd's SMTP (authentication, say)."""

    def __init__(self, **smtp_options: Any) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True, **smtp_options
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> Mailbox:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def sent_to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]

    async def wait_for(self, address: str, subject: str) -> EmailMessage:
        """The first message to ``address`` whose subject contains ``subject``."""
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        while time.monotonic() < deadline:
            for message in self.sent_to(address):
                if subject in message["Subject"]:
                    return message
            await asyncio.sleep(0.02)
        raise AssertionError(f"no message {subject!r} to {address}: {self.messages}")


def link_in(message: EmailMessage, path: str) -> str:
    """The link to ``path`` (with its token) in a mailed message."""
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    found = re.search(r"https?://\S*?" + re.escape(path) + r"\?token=[A-Za-z0-9_-]+", text)
    assert found, text
    return found.group(0)


def token_of(link: str) -> str:
    return query_of(link)["token"]


def new_email() -> str:
    return unique("person") + "@example.com"


def new_mobile_number() -> str:
    """A valid French mobile number, unique enough for a test run: +33 6 1x xx xx xx."""
    return f"+3361{secrets.randbelow(10**7):07d}"


class LogoutReceiver:
    """A relying party's back-channel logout endpoint that records what it receives."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.failures_to_give = 0  # answer 503 this many times first
        self.attempts = 0
        self.received = asyncio.Event()
        self.app = Starlette(routes=[Route("/backchannel", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        self.attempts += 1
        if self.failures_to_give:
            self.failures_to_give -= 1
            return Response(status_code=503)
        form = dict(parse_qsl((await request.body()).decode()))
        self.tokens.append(form["logout_token"])
        self.received.set()
        return Response(status_code=200, headers={"Cache-Control": "no-store"})
