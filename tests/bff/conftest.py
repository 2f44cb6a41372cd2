"""The BFF under test, served over real HTTP with real Redis, against a provider over real HTTP.

- ``provider``: a module's ``ScriptedProvider``, reset for each test.
- ``echo_api``: stands in for conversations_service behind the proxy. It verifies each access
  token with ``servicekit.tokens.AccessTokenVerifier`` against the current provider and answers
  with who it was for (never the token), and whether a cookie or X-CSRF reached it.
- ``bff``: a module's BFF app on its own port, with a clock tests can move forward.
- ``Browser``: an httpx client with a cookie jar that records every response it sees.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bff.app import create_app
from bff.settings import BffSettings, load_settings
from servicekit.errors import Unauthorized
from servicekit.tokens import AccessTokenVerifier, bearer_token_from_header
from tests.bff.scripted_provider import CLIENT_ID, CLIENT_SECRET, ScriptedProvider
from tests.support.issuer import DEFAULT_AUDIENCE, IssuerHost, KeyType, running_issuer_host
from tests.support.servers import free_port, serve_in_loop


class OffsetClock:
    """Wall-clock time (Unix seconds) that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class EchoApi:
    """A stand-in API service: verifies the bearer token, says whose it was."""

    def __init__(self) -> None:
        self.url = ""  # set once served
        self.verifier: AccessTokenVerifier | None = None
        self.http = httpx.AsyncClient(timeout=5.0)
        self.calls = 0
        self.app = Starlette(routes=[Route("/api/conversations", self._conversations)])

    def trust(self, issuer: str, audience: str = DEFAULT_AUDIENCE) -> None:
        self.verifier = AccessTokenVerifier(issuer, audience, self.http)

    async def _conversations(self, request: Request) -> Response:
        self.calls += 1
        assert self.verifier is not None
        try:
            token = bearer_token_from_header(request.headers.get("Authorization"))
            principal = await self.verifier.verify(token)
        except Unauthorized as error:
            return JSONResponse({"error": error.instance_code}, status_code=401)
        return JSONResponse(
            {
                "sub": principal.subject,
                "kind": principal.kind,
                "token_id": principal.claims.get("jti"),  # tells tokens apart, reveals none
                "cookie_forwarded": "cookie" in request.headers,
                "csrf_forwarded": "x-csrf" in request.headers,
            }
        )


@dataclass
class RunningBff:
    url: str
    app: Starlette
    settings: BffSettings
    clock: OffsetClock


@dataclass
class Browser:
    """A browser: one cookie jar, and every response it received (for token scans)."""

    bff: RunningBff
    http: httpx.AsyncClient
    responses: list[httpx.Response] = field(default_factory=list)

    async def sign_in(self, return_url: str | None = None) -> httpx.Response:
        """Sign in through the scripted provider; the BFF's answer to the callback."""
        callback = await self.authorize(return_url)
        return await self.http.get(callback)

    async def authorize(self, return_url: str | None = None) -> str:
        """Start a login and let the provider approve it; the callback URL, not yet visited."""
        login = await self.start_login(return_url)
        approved = await self.http.get(login.headers["location"])
        assert approved.status_code == 302, approved.text
        return approved.headers["location"]

    async def start_login(self, return_url: str | None = None) -> httpx.Response:
        params = {"returnUrl": return_url} if return_url is not None else {}
        login = await self.http.get("/bff/login", params=params)
        assert login.status_code == 302, login.text
        return login

    async def user(self) -> httpx.Response:
        return await self.http.get("/bff/user", headers={"X-CSRF": "1"})

    async def api(self) -> httpx.Response:
        return await self.http.get("/api/conversations", headers={"X-CSRF": "1"})

    def session_cookie(self) -> str | None:
        return self.http.cookies.get("parley-session")


@pytest.fixture(scope="module")
async def provider_host() -> AsyncIterator[IssuerHost]:
    async with running_issuer_host() as host:
        yield host


@pytest.fixture(scope="module")
def module_provider(provider_host: IssuerHost, echo_api: EchoApi) -> ScriptedProvider:
    provider = ScriptedProvider(provider_host.url)
    provider_host.issuer = provider
    echo_api.trust(provider.url)
    return provider


@pytest.fixture
def provider(module_provider: ScriptedProvider) -> ScriptedProvider:
    """The module's provider, behaving well again and about to sign in someone new.

    Shared by a module's tests (with its keys) so that the module's BFF keeps its JWKS cache:
    starting a BFF per test would take most of the suite's time.
    """
    module_provider.reset()
    return module_provider


@pytest.fixture(scope="module")
async def echo_api() -> AsyncIterator[EchoApi]:
    echo = EchoApi()
    async with serve_in_loop(echo.app) as url:
        echo.url = url
        yield echo
    await echo.http.aclose()


def bff_environment(
    provider_url: str, redis_url: str, redis_namespace: str, **overrides: str
) -> dict[str, str]:
    return {
        "OIDC_ISSUER": provider_url,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "API_AUDIENCE": DEFAULT_AUDIENCE,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": redis_namespace,
        "SESSION_SECRET": "bff-tests-session-secret-of-enough-length",
        "SESSION_IDLE_TIMEOUT_SECONDS": "600",
        "SESSION_ABSOLUTE_TIMEOUT_SECONDS": "1800",
        # Every test signs in from 127.0.0.1; only the rate-limit test wants a low limit.
        "LOGIN_RATE_LIMIT": "10000/minute",
        "LOG_FORMAT": "console",
    } | overrides


@contextlib.asynccontextmanager
async def running_bff(
    environ: Mapping[str, str], clock: OffsetClock | None = None, port: int | None = None
) -> AsyncIterator[RunningBff]:
    """The BFF on ``port`` (default free); PUBLIC_URL defaults to where it is served."""
    port = port or free_port()
    settings = load_settings({"PUBLIC_URL": f"http://127.0.0.1:{port}"} | dict(environ))
    clock = clock or OffsetClock()
    app = create_app(settings, clock=clock)
    async with serve_in_loop(app, port) as url:
        yield RunningBff(url, app, settings, clock)


@pytest.fixture(scope="module")
async def module_bff(
    module_provider: ScriptedProvider, echo_api: EchoApi, redis_url: str, redis_namespace: str
) -> AsyncIterator[RunningBff]:
    environ = bff_environment(
        module_provider.url, redis_url, redis_namespace, CONVERSATIONS_URL=echo_api.url
    )
    async with running_bff(environ) as running:
        yield running


@pytest.fixture
def bff(module_bff: RunningBff, provider: ScriptedProvider) -> Iterator[RunningBff]:
    """The module's BFF, its clock back at the real time after the test."""
    try:
        yield module_bff
    finally:
        module_bff.clock.offset = 0.0


@contextlib.asynccontextmanager
async def isolated_bff(
    redis_url: str, redis_namespace: str, *, key_type: KeyType = "EC", **environ: str
) -> AsyncIterator[tuple[ScriptedProvider, RunningBff]]:
    """A provider and a BFF of their own, for tests that change keys or need other settings."""
    async with running_issuer_host() as host:
        provider = ScriptedProvider(host.url, key_type=key_type)
        host.issuer = provider
        environ = bff_environment(provider.url, redis_url, redis_namespace, **environ)
        async with running_bff(environ) as bff:
            yield provider, bff


@contextlib.asynccontextmanager
async def open_browser(bff: RunningBff) -> AsyncIterator[Browser]:
    responses: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        responses.append(response)

    async with httpx.AsyncClient(
        base_url=bff.url, timeout=10.0, event_hooks={"response": [record]}
    ) as http:
        yield Browser(bff, http, responses)


@pytest.fixture
async def browser(bff: RunningBff) -> AsyncIterator[Browser]:
    async with open_browser(bff) as opened:
        yield opened
