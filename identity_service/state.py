"""What the provider's routes and pages share, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from identity_service.backchannel import BackchannelLogout
from identity_service.browser import BrowserCookies
from identity_service.clock import utc_now
from identity_service.endpoints import ProviderServer
from identity_service.mail import Mailer
from identity_service.password_reset import PasswordReset
from identity_service.provider import Provider
from identity_service.registration import Registration
from identity_service.service import SignIn
from identity_service.sessions import SignedInUser
from servicekit.tokens import AccessTokenVerifier


@dataclass(frozen=True)
class IdentityState:
    provider: Provider
    server: ProviderServer
    sign_in: SignIn
    registration: Registration
    password_reset: PasswordReset
    mailer: Mailer
    backchannel: BackchannelLogout
    cookies: BrowserCookies
    templates: Jinja2Templates
    # Verifies access tokens presented to /userinfo and /api/users, as any Parley service does.
    verifier: AccessTokenVerifier


def identity_state(request: Request) -> IdentityState:
    state: IdentityState = request.app.state.identity
    return state


async def current_user(request: Request) -> SignedInUser | None:
    """Who is signed in on this browser, if anyone."""
    state = identity_state(request)
    session_id = state.cookies.session_id(request)
    if session_id is None:
        return None
    return await state.provider.sessions.get_signed_in_user(session_id, utc_now())
