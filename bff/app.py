"""The backend-for-frontend: browser sessions, the API proxy and the web app.

Everything the BFF is made of is built here, once, and wired together: routes (``/bff/*``, the
``/api/*`` proxy, the SPA at ``/`` last, as the catch-all), middleware and the shared skeleton's
exception handlers (``servicekit.app``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from bff.auth_routes import AuthRoutes
from bff.authentication import BrowserAuthentication
from bff.cookies import BrowserCookies
from bff.login_state import LoginStates
from bff.oidc import PROVIDER_TIMEOUT, OpenIdProvider
from bff.provider_tokens import ProviderTokenValidator
from bff.proxy import ApiProxy, upstream_urls
from bff.rate_limit import LoginRateLimiter
from bff.realtime_relay import RealtimeRelay
from bff.security_headers import security_headers
from bff.sessions import SessionStore
from bff.settings import BffSettings
from bff.sign_in import SignIn
from servicekit.app import create_service_app
from servicekit.redis_client import RedisConnection
from servicekit.security_headers import SecurityHeadersMiddleware
from servicekit.tokens import ProviderKeys

WEB_DIRECTORY: Final = Path(__file__).resolve().parent.parent / "web"


def create_app(settings: BffSettings, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The BFF; ``clock`` (Unix seconds) is what session timeouts and token expiry are read on."""
    # Sessions live in Redis: without it nobody can sign in, so it gates readiness.
    redis = RedisConnection(settings.redis_url)
    provider_http = httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, trust_env=False)
    provider = OpenIdProvider(
        provider_http,
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        redirect_uri=settings.public_url + "/bff/callback",
        scopes=settings.oidc_scopes,
        audience=settings.api_audience,
    )
    validator = ProviderTokenValidator(
        ProviderKeys(settings.oidc_issuer, provider_http, clock=clock),
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        clock=clock,
    )
    sessions = SessionStore(
        redis.client,
        settings.redis_namespace,
        idle_timeout_seconds=settings.session_idle_timeout_seconds,
        absolute_timeout_seconds=settings.session_absolute_timeout_seconds,
        clock=clock,
    )
    cookies = BrowserCookies(
        settings.session_secret,
        secure=settings.cookies_secure,
        session_max_age_seconds=settings.session_absolute_timeout_seconds,
    )
    authentication = BrowserAuthentication(
        cookies=cookies,
        sessions=sessions,
        provider=provider,
        redis=redis.client,
        namespace=settings.redis_namespace,
        clock=clock,
    )
    auth_routes = AuthRoutes(
        sign_in=SignIn(
            provider=provider,
            validator=validator,
            login_states=LoginStates(redis.client, settings.redis_namespace),
            sessions=sessions,
            public_url=settings.public_url,
        ),
        authentication=authentication,
        cookies=cookies,
        rate_limiter=LoginRateLimiter(
            redis.client, settings.redis_namespace, settings.login_rate_limit
        ),
        idle_timeout_seconds=settings.session_idle_timeout_seconds,
    )
    proxy = ApiProxy(upstream_urls(settings), access_token_for=authentication.access_token_for)
    realtime = RealtimeRelay(
        authentication=authentication,
        sessions=sessions,
        redis=redis.client,
        namespace=settings.redis_namespace,
        public_url=settings.public_url,
        realtime_url=settings.realtime_url,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with realtime.lifespan(app):
                yield
        finally:
            await proxy.aclose()
            await provider_http.aclose()

    app = create_service_app(
        settings,
        routes=[
            *auth_routes.routes(),
            *proxy.routes(),
            *realtime.routes(),
            Mount("/", app=StaticFiles(directory=WEB_DIRECTORY, html=True), name="web"),
        ],
        dependencies={"redis": redis},
        lifespan=lifespan,
    )
    # Outermost, so that even the opaque 500 of the shared skeleton carries the headers.
    app.add_middleware(
        SecurityHeadersMiddleware,
        always=security_headers(settings.public_url, settings.oidc_issuer),
        no_store_under=("/bff/",),
    )
    # For the WebSocket relay and tests: who is signed in, and ending sessions.
    app.state.authentication = authentication
    app.state.sessions = sessions
    return app
