"""Signing in and out through the OpenID Provider: the rules behind the ``/bff/*`` routes.

SignInFailed — a sign-in could not be completed; ``message`` is for the person, ``reason``
               for the log, ``status`` for the page
"""

from __future__ import annotations

import logging
import re
from typing import Final

from bff.cookies import new_random_id
from bff.login_state import LoginState, LoginStates, safe_return_url
from bff.oidc import OpenIdProvider, ProviderRejected
from bff.provider_tokens import InvalidProviderToken, ProviderTokenValidator
from bff.sessions import Session, SessionStore
from servicekit.errors import UpstreamUnavailable

logger = logging.getLogger("bff.sign_in")

# The profile claims of OpenID Connect Core §5.1 that the SPA may see; never a token, a nonce,
# a hash of a token or the provider's session id.
PROFILE_CLAIMS: Final = frozenset(
    {
        "sub", "name", "given_name", "family_name", "middle_name", "nickname",
        "preferred_username", "profile", "picture", "website", "email", "email_verified",
        "gender", "birthdate", "zoneinfo", "locale", "phone_number", "phone_number_verified",
        "address", "updated_at",
    }
)  # fmt: skip
MAX_STATE_LENGTH: Final = 128  # ours are 43 characters; anything longer is not worth a lookup
_START_AGAIN: Final = "Please start signing in again."
_ERROR_CODE: Final = re.compile(r"[a-z_]{1,64}")  # RFC 6749 §4.1.2.1 codes


class SignInFailed(Exception):
    def __init__(self, message: str, *, reason: str, status: int = 400) -> None:
        self.message = message
        self.reason = reason
        self.status = status
        super().__init__(reason)


def _provider_error_message(error: str) -> str:
    if error == "access_denied":
        return "Sign-in was cancelled or refused."
    if error in {"login_required", "consent_required", "interaction_required"}:
        return "The identity provider needs you to sign in there first. " + _START_AGAIN
    return "The identity provider could not sign you in. " + _START_AGAIN


class SignIn:
    """Starts and finishes sign-ins, signs out, and handles back-channel logouts."""

    def __init__(
        self,
        *,
        provider: OpenIdProvider,
        validator: ProviderTokenValidator,
        login_states: LoginStates,
        sessions: SessionStore,
        public_url: str,
    ) -> None:
        self._provider = provider
        self._validator = validator
        self._login_states = login_states
        self._sessions = sessions
        self._public_url = public_url

    async def start(
        self, return_url: str | None, *, browser_binding: str, current: Session | None
    ) -> str:
        """Record a new login for the browser ``browser_binding``; the URL to send it to."""
        state, code_verifier = new_random_id(), new_random_id() + new_random_id()
        login = LoginState(
            nonce=new_random_id(),
            code_verifier=code_verifier,  # 86 characters, within RFC 7636's 43–128
            return_url=safe_return_url(return_url),
            browser_binding=browser_binding,
            replaces_session=current.id if current is not None else None,
        )
        url = await self._provider.authorization_url(
            state=state, nonce=login.nonce, code_verifier=code_verifier
        )
        await self._login_states.save(state, login)
        return url

    async def finish(
        self, params: dict[str, str], *, browser_binding: str | None
    ) -> tuple[Session, str]:
        """The new session and where to send the browser, for the provider's redirect back.

        Raises ``SignInFailed`` for every way a callback can be wrong.
        """
        state = params.get("state", "")
        login = await self._login_states.take(state) if 0 < len(state) <= MAX_STATE_LENGTH else None
        if "error" in params:
            # Any text could arrive here: log only what looks like an OAuth error code.
            error = params["error"] if _ERROR_CODE.fullmatch(params["error"]) else "malformed"
            raise SignInFailed(_provider_error_message(error), reason=f"provider: {error}")
        if login is None:
            raise SignInFailed(
                "This sign-in has expired or was already used. " + _START_AGAIN,
                reason="unknown, used or expired state",
            )
        if not login.started_by(browser_binding):
            # Login CSRF: someone else's authorization response, delivered to this browser.
            raise SignInFailed(
                "This sign-in was started in another browser. " + _START_AGAIN,
                reason="state bound to another browser",
            )
        # RFC 9207: a provider that names itself must name the one the login was sent to.
        if "iss" in params and params["iss"] != self._provider.issuer:
            raise SignInFailed(_START_AGAIN, reason="callback from another issuer")
        if not params.get("code"):
            raise SignInFailed(_START_AGAIN, reason="callback without a code")
        session = await self._redeem(params["code"], login)
        if login.replaces_session is not None:
            previous = await self._sessions.get(login.replaces_session, touch=False)
            if previous is not None:
                await self._sessions.end(previous, "replaced")
        return session, self._public_url + login.return_url

    async def _redeem(self, code: str, login: LoginState) -> Session:
        try:
            tokens = await self._provider.exchange_code(code, login.code_verifier)
            if tokens.id_token is None:
                raise SignInFailed(_START_AGAIN, reason="no ID token in the token response")
            claims = await self._validator.validate_id_token(tokens.id_token, nonce=login.nonce)
            userinfo = await self._provider.userinfo(tokens.access_token)
        except ProviderRejected as error:
            raise SignInFailed(
                "The identity provider did not accept this sign-in. " + _START_AGAIN,
                reason=f"token endpoint: {error.error}",
            ) from error
        except InvalidProviderToken as error:
            raise SignInFailed(_START_AGAIN, reason=error.reason) from error
        except UpstreamUnavailable as error:
            raise SignInFailed(
                "The identity provider cannot be reached. Please try again in a moment.",
                reason=error.detail,
                status=503,
            ) from error
        # OIDC Core §5.3.2: userinfo about someone else must not be mixed into this identity.
        if userinfo is not None and userinfo.get("sub") != claims["sub"]:
            raise SignInFailed(_START_AGAIN, reason="userinfo sub differs from the ID token's")
        profile = {
            name: value
            for name, value in (claims | (userinfo or {})).items()
            if name in PROFILE_CLAIMS
        }
        provider_sid = claims.get("sid")
        return await self._sessions.create(
            subject=claims["sub"],
            claims=profile,
            provider_sid=provider_sid if isinstance(provider_sid, str) else None,
            id_token=tokens.id_token,
            tokens=tokens,
        )

    async def sign_out(self, session: Session) -> str:
        """End ``session`` here and at the provider; where to send the browser next."""
        await self._sessions.end(session, "logout")
        if session.refresh_token is not None:
            await self._provider.revoke(session.refresh_token)
        home = self._public_url + "/"
        try:
            return await self._provider.end_session_url(post_logout_redirect_uri=home)
        except UpstreamUnavailable:
            return home  # the session here is over; the provider's may outlive it

    async def backchannel_logout(self, logout_token: str) -> int:
        """End the sessions a valid logout token names; how many ended.

        Raises ``InvalidProviderToken`` for a token that must be refused.
        """
        claims = await self._validator.validate_logout_token(logout_token)
        ended = await self._sessions.end_provider_sessions(
            provider_sid=claims.get("sid"), subject=claims.get("sub")
        )
        logger.info("back-channel logout", extra={"sessions_ended": ended})
        return ended
