"""The provider's cookies and the CSRF tokens of its forms.

Two cookies, both HttpOnly, SameSite=Lax, Path=/, with no Domain; ``Secure`` and the
``__Host-`` prefix outside development (the prefix stops a sibling subdomain planting them):

    parley_idp          the sign-in session: its id, signed with itsdangerous (the id itself is
                        opaque and tells nothing); a name distinct from the BFF's cookie
    parley_idp_browser  a random token that ties forms to this browser

A form's CSRF token is an HMAC of the browser token and the form's purpose (which sign-in
request it completes, say). A forged cross-site POST carries no browser cookie (SameSite=Lax) or
cannot know the token; a token lifted from another browser does not match this browser's cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Final

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

BROWSER_TOKEN_BYTES: Final = 32
BROWSER_COOKIE_SECONDS: Final = 24 * 3600  # forms older than a day are not expected


class BrowserCookies:
    def __init__(self, secret: str, *, secure: bool) -> None:
        prefix = "__Host-" if secure else ""
        self.session_cookie = prefix + "parley_idp"
        self.browser_cookie = prefix + "parley_idp_browser"
        self._secure = secure
        self._session_ids = URLSafeSerializer(secret, salt="parley-idp-session")
        self._csrf_key = hashlib.sha256(b"parley-idp-csrf:" + secret.encode()).digest()

    def session_id(self, request: Request) -> uuid.UUID | None:
        """The sign-in session the browser's cookie names, if the cookie is genuine."""
        value = request.cookies.get(self.session_cookie)
        if not value:
            return None
        try:
            return uuid.UUID(str(self._session_ids.loads(value)))
        except (BadSignature, ValueError):
            return None

    def set_session(self, response: Response, session_id: uuid.UUID, max_age: int) -> None:
        self._set(response, self.session_cookie, self._session_ids.dumps(str(session_id)), max_age)

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self._secure, httponly=True, samesite="lax"
        )

    def browser_token(self, request: Request) -> str:
        """The browser's token, or a new one for ``remember_browser`` to set."""
        token = request.cookies.get(self.browser_cookie)
        if token and len(token) <= 64:
            return token
        return secrets.token_urlsafe(BROWSER_TOKEN_BYTES)

    def remember_browser(self, response: Response, browser_token: str) -> None:
        self._set(response, self.browser_cookie, browser_token, BROWSER_COOKIE_SECONDS)

    def csrf_token(self, browser_token: str, purpose: str) -> str:
        message = f"{browser_token}\n{purpose}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()

    def csrf_is_valid(self, request: Request, submitted: str, purpose: str) -> bool:
        """Whether ``submitted`` is this browser's token for ``purpose``."""
        browser_token = request.cookies.get(self.browser_cookie)
        if not browser_token or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(browser_token, purpose), submitted)

    def _set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )
