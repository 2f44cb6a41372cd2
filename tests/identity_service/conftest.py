"""identity_service served over real HTTP, on the run's PostgreSQL (both modes) and Redis, with
a real SMTP server to mail to and a real back-channel logout receiver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest

from identity_service.app import create_app
from identity_service.settings import load_settings
from servicekit.db import Database
from tests.identity_service.support import (
    Browser,
    IdentityFactory,
    IdentityServer,
    LogoutReceiver,
    Mailbox,
)
from tests.support.servers import free_port, serve_in_loop

ServerStarter = Callable[..., AbstractAsyncContextManager[IdentityServer]]


@pytest.fixture(scope="module")
def start_identity_server(database_url: str, redis_url: str, redis_namespace: str) -> ServerStarter:
    """Starts the provider; keyword arguments are environment variables to add or override."""

    @asynccontextmanager
    async def start(**environment: str) -> AsyncIterator[IdentityServer]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings_environment: Mapping[str, str] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            # Each server its own namespace: sign-in throttles never leak between tests.
            "REDIS_NAMESPACE": f"{redis_namespace}:identity-{uuid.uuid4().hex[:8]}",
            "OIDC_ISSUER": url,
            "PORT": str(port),
            "PASSWORD_HASH_PROFILE": "fast",
            **environment,
        }
        settings = load_settings(settings_environment)
        async with serve_in_loop(create_app(settings), port):
            yield IdentityServer(url, settings)

    return start


@pytest.fixture(scope="module")
async def identity(start_identity_server: ServerStarter) -> AsyncIterator[IdentityServer]:
    async with start_identity_server() as server:
        yield server


@pytest.fixture
async def browser(identity: IdentityServer) -> AsyncIterator[Browser]:
    """A browser of its own (one cookie jar) in front of the module's provider."""
    browser = Browser(identity.url)
    try:
        yield browser
    finally:
        await browser.aclose()


@pytest.fixture(scope="module")
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module")
def factory(database: Database) -> IdentityFactory:
    return IdentityFactory(database)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with Mailbox() as mailbox:
        yield mailbox


@pytest.fixture(scope="module")
async def mail_identity(
    start_identity_server: ServerStarter, mailbox: Mailbox
) -> AsyncIterator[IdentityServer]:
    """The provider mailing through ``mailbox``. Every request comes from one address here, so
    the per-address limits are raised out of the way (tests of them start their own server)."""
    async with start_identity_server(
        SMTP_URL=mailbox.url,
        REGISTRATION_LIMITS_PER_ADDRESS="1000 per minute",
        RESET_LIMITS_PER_ADDRESS="1000 per minute",
    ) as server:
        yield server


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[LogoutReceiver, str]]:
    """A back-channel logout receiver and its URI."""
    receiver = LogoutReceiver()
    async with serve_in_loop(receiver.app) as url:
        yield receiver, f"{url}/backchannel"
