"""identity_service is Parley's embedded OpenID Provider and user directory.

GET  /.well-known/openid-configuration   discovery
GET  /jwks                               signing keys (current and recently retired)
GET|POST /authorize                      authorization code + PKCE (pages.py)
GET|POST /login, /consent                the sign-in and consent pages
GET|POST /register, GET /verify          registration and email verification (mailed links)
GET|POST /reset, /reset/confirm          password reset by a mailed link
POST /token                              authorization_code, refresh_token, client_credentials
POST /revoke                             RFC 7009 (refresh tokens)
GET|POST /userinfo                       OpenID Core §5.3
GET|POST /logout                         RP-initiated logout, then back-channel logout
GET  /api/users, /api/users/{id}         the people directory (bearer access token)
GET  /api/identity_service/openapi.json  the OpenAPI document of that API
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
from limits import RateLimitItem
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from identity_service import logout, pages, registration_pages, reset_pages, routes
from identity_service.backchannel import BackchannelLogout, build_delivery_client
from identity_service.browser import BrowserCookies
from identity_service.clock import utc_now
from identity_service.endpoints import ProviderServer
from identity_service.headers import SecurityHeadersMiddleware
from identity_service.mail import build_mailer
from identity_service.openapi import openapi_document
from identity_service.password_reset import PasswordReset
from identity_service.provider import build_provider
from identity_service.registration import Registration
from identity_service.service import SignIn
from identity_service.settings import IdentitySettings
from identity_service.state import IdentityState
from identity_service.throttle import Throttle
from servicekit.app import create_service_app
from servicekit.db import Database
from servicekit.redis_client import RedisConnection
from servicekit.tokens import AccessTokenVerifier

PACKAGE_DIRECTORY = Path(__file__).parent
# Seconds; the verifier fetches this provider's own discovery document and JWKS.
VERIFIER_HTTP_TIMEOUT_SECONDS = 5.0


def create_app(settings: IdentitySettings) -> Starlette:
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    redis_connection = RedisConnection(settings.redis_url)
    provider = build_provider(settings, database, redis_connection.client)
    delivery_client = build_delivery_client()
    verifier_client = httpx.AsyncClient(timeout=VERIFIER_HTTP_TIMEOUT_SECONDS)

    def throttle(
        action: str, per_identifier: Sequence[RateLimitItem], per_address: Sequence[RateLimitItem]
    ) -> Throttle:
        return Throttle(
            redis_connection.client, settings.redis_namespace, action, per_identifier, per_address
        )

    state = IdentityState(
        provider=provider,
        server=ProviderServer(provider),
        sign_in=SignIn(
            provider.accounts,
            provider.sessions,
            provider.passwords,
            throttle("login", settings.login_limits_per_account, settings.login_limits_per_address),
            session_lifetime_seconds=settings.login_session_lifetime_seconds,
            default_region=settings.default_phone_region,
        ),
        registration=Registration(
            provider.accounts,
            provider.account_tokens,
            provider.passwords,
            throttle(
                "register",
                settings.registration_limits_per_identifier,
                settings.registration_limits_per_address,
            ),
            issuer=provider.issuer,
            default_region=settings.default_phone_region,
        ),
        password_reset=PasswordReset(
            provider.accounts,
            provider.account_tokens,
            provider.passwords,
            throttle(
                "reset", settings.reset_limits_per_identifier, settings.reset_limits_per_address
            ),
            issuer=provider.issuer,
            default_region=settings.default_phone_region,
        ),
        mailer=build_mailer(settings),
        backchannel=BackchannelLogout(delivery_client, provider.keys, provider.issuer),
        cookies=BrowserCookies(settings.identity_session_secret, secure=settings.is_production),
        templates=Jinja2Templates(directory=PACKAGE_DIRECTORY / "templates"),
        verifier=AccessTokenVerifier(settings.oidc_issuer, settings.api_audience, verifier_client),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await provider.keys.ensure_signing_key(utc_now())
            yield
        finally:
            await delivery_client.aclose()
            await verifier_client.aclose()

    app = create_service_app(
        settings,
        routes=[
            Route("/.well-known/openid-configuration", routes.discovery, methods=["GET"]),
            Route("/jwks", routes.jwks, methods=["GET"]),
            Route("/authorize", pages.authorize, methods=["GET", "POST"]),
            Route("/login", pages.sign_in_page, methods=["GET"]),
            Route("/login", pages.submit_sign_in, methods=["POST"]),
            Route("/consent", pages.consent_page, methods=["GET"]),
            Route("/consent", pages.submit_consent, methods=["POST"]),
            Route("/register", registration_pages.registration_page, methods=["GET"]),
            Route("/register", registration_pages.submit_registration, methods=["POST"]),
            Route("/verify", registration_pages.verify_email, methods=["GET"]),
            Route("/reset", reset_pages.reset_request_page, methods=["GET"]),
            Route("/reset", reset_pages.submit_reset_request, methods=["POST"]),
            Route("/reset/confirm", reset_pages.new_password_page, methods=["GET"]),
            Route("/reset/confirm", reset_pages.submit_new_password, methods=["POST"]),
            Route("/token", routes.token, methods=["POST"]),
            Route("/revoke", routes.revoke, methods=["POST"]),
            Route("/userinfo", routes.userinfo, methods=["GET", "POST"]),
            Route("/logout", logout.logout, methods=["GET", "POST"]),
            Route("/api/users", routes.list_users, methods=["GET"]),
            Route("/api/users/{user_id}", routes.get_user, methods=["GET"]),
            Route("/api/identity_service/openapi.json", openapi_document, methods=["GET"]),
            Mount("/static", StaticFiles(directory=PACKAGE_DIRECTORY / "static"), name="static"),
        ],
        dependencies={"database": database, "redis": redis_connection},
        middleware=[Middleware(SecurityHeadersMiddleware)],
        lifespan=lifespan,
    )
    app.state.identity = state
    return app
