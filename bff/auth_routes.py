"""The ``/bff/*`` routes: thin HTTP over ``bff.sign_in`` and ``bff.authentication``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bff.authentication import BrowserAuthentication
from bff.cookies import BrowserCookies, new_random_id
from bff.csrf import require_csrf_header
from bff.pages import sign_in_problem_page
from bff.provider_tokens import InvalidProviderToken
from bff.rate_limit import LoginRateLimiter
from bff.sessions import Session
from bff.sign_in import SignIn, SignInFailed
from servicekit.errors import BadRequest, Forbidden, PayloadTooLarge, UpstreamUnavailable

logger = logging.getLogger("bff.auth_routes")

# Bytes. A logout token is a JWT of a few hundred bytes; nothing legitimate comes near this.
MAX_LOGOUT_REQUEST_BYTES: Final = 16 * 1024
_NO_STORE: Final = {"Cache-Control": "no-store"}


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds")


class AuthRoutes:
    def __init__(
        self,
        *,
        sign_in: SignIn,
        authentication: BrowserAuthentication,
        cookies: BrowserCookies,
        rate_limiter: LoginRateLimiter,
        idle_timeout_seconds: int,
    ) -> None:
        self._sign_in = sign_in
        self._authentication = authentication
        self._cookies = cookies
        self._rate_limiter = rate_limiter
        self._idle_timeout = idle_timeout_seconds

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/bff/login", self.login, methods=["GET"]),
            Route("/bff/callback", self.callback, methods=["GET"]),
            Route("/bff/user", self.user, methods=["GET"]),
            Route("/bff/logout", self.logout, methods=["GET", "POST"]),
            Route("/bff/backchannel-logout", self.backchannel_logout, methods=["POST"]),
        ]

    async def login(self, request: Request) -> Response:
        await self._rate_limiter.check(request)
        # Reuse the browser's binding, so logins started in two tabs can both finish.
        binding = self._cookies.login_binding(request) or new_random_id()
        try:
            url = await self._sign_in.start(
                request.query_params.get("returnUrl"),
                browser_binding=binding,
                current=await self._authentication.session_for(request),
            )
        except UpstreamUnavailable:
            return sign_in_problem_page(
                "The identity provider cannot be reached. Please try again in a moment.",
                status=503,
            )
        response = RedirectResponse(url, status_code=302)
        self._cookies.set_login_binding(response, binding)
        return response

    async def callback(self, request: Request) -> Response:
        try:
            session, return_url = await self._sign_in.finish(
                dict(request.query_params), browser_binding=self._cookies.login_binding(request)
            )
        except SignInFailed as failure:
            logger.warning("sign-in failed: %s", failure.reason, extra={"reason": failure.reason})
            return sign_in_problem_page(failure.message, status=failure.status)
        response = RedirectResponse(return_url, status_code=302)
        max_age = int(session.expires_at - session.created_at)
        self._cookies.set_session_id(response, session.id, max_age)
        logger.info("signed in", extra={"session": session.public_id})
        return response

    async def user(self, request: Request) -> Response:
        require_csrf_header(request)
        session = await self._authentication.require_session(request)
        return JSONResponse(self._user_document(session))

    def _user_document(self, session: Session) -> dict[str, object]:
        return {
            "claims": session.claims,
            "logout_url": "/bff/logout?" + urlencode({"sid": session.public_id}),
            "expires_at": _iso(session.expires_at),
            "idle_expires_at": _iso(
                min(session.last_seen_at + self._idle_timeout, session.expires_at)
            ),
        }

    async def logout(self, request: Request) -> Response:
        # The sid proves the request comes from a page that read /bff/user: a cross-site link
        # or form cannot know it, so it cannot sign anyone out.
        sid = request.query_params.get("sid")
        if not sid:
            raise BadRequest("Logging out needs the session's sid.", code="logout_sid_missing")
        session = await self._authentication.session_for(request)
        if session is None:
            redirect_to = "/"
        elif sid != session.public_id:
            raise Forbidden("The sid does not name your session.", code="logout_sid_mismatch")
        else:
            redirect_to = await self._sign_in.sign_out(session)
        # 303: a POSTed logout continues with a GET at the provider.
        response = RedirectResponse(redirect_to, status_code=303)
        self._cookies.clear_session_id(response)
        return response

    async def backchannel_logout(self, request: Request) -> Response:
        """OpenID Back-Channel Logout 1.0 §2.8: 200 when done, 400 when the token is refused."""
        form = await _small_form(request)
        token = form.get("logout_token")
        if not token:
            return _logout_error("the logout_token parameter is missing")
        try:
            await self._sign_in.backchannel_logout(token)
        except InvalidProviderToken as error:
            logger.warning("logout token refused", extra={"reason": error.reason})
            return _logout_error(error.reason)
        return Response(status_code=200, headers=_NO_STORE)


def _logout_error(description: str) -> Response:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description},
        status_code=400,
        headers=_NO_STORE,
    )


async def _small_form(request: Request) -> dict[str, str]:
    """The URL-encoded form body, refusing bodies over ``MAX_LOGOUT_REQUEST_BYTES``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGOUT_REQUEST_BYTES:
            raise PayloadTooLarge("The logout request is too large.")
    return dict(parse_qsl(body.decode("utf-8", errors="replace")))
