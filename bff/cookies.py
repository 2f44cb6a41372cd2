"""The BFF's two cookies: the session cookie and the short-lived login cookie.

Both hold only a random id signed with ``SESSION_SECRET`` (itsdangerous, HMAC-SHA256), so a cookie
the BFF did not issue is ignored before Redis is asked about it. Everything else lives server-side.

- The session cookie names a session in Redis. ``SameSite=Strict``: the SPA only ever sends it on
  same-origin fetches and WebSocket handshakes, so no cross-site request carries it.
- The login cookie binds a login in progress to the browser that started it. It must survive the
  cross-site redirect back from the provider — a ``Strict`` cookie is not sent on that — so it is
  ``SameSite=Lax``; it lives only as long as a login state does.

Both are ``HttpOnly``, ``Path=/``, without ``Domain``, and ``Secure`` with the ``__Host-`` prefix
unless the BFF runs on plain HTTP on loopback in development.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final, Literal

from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import HTTPConnection
from starlette.responses import Response

LOGIN_COOKIE_MAX_AGE_SECONDS: Final = 600  # as long as a login state lives in Redis
_ID_BYTES: Final = 32  # 256 bits of randomness; checklist asks for at least 128


def new_random_id() -> str:
    """A fresh unguessable id (256 bits, URL-safe base64, 43 characters)."""
    return secrets.token_urlsafe(_ID_BYTES)


class _SignedCookie:
    def __init__(
        self,
        name: str,
        secret: str,
        *,
        salt: str,
        secure: bool,
        same_site: Literal["strict", "lax"],
    ) -> None:
        self.name = ("__Host-" if secure else "") + name
        self._secure = secure
        self._same_site: Literal["strict", "lax"] = same_site
        # A salt per cookie, so a login cookie can never be replayed as a session cookie.
        self._signer = TimestampSigner(secret, salt=salt, digest_method=hashlib.sha256)

    def read(self, connection: HTTPConnection, max_age_seconds: int) -> str | None:
        """The id in this cookie, if it is present, correctly signed and not too old."""
        value = connection.cookies.get(self.name)
        if not value:
            return None
        try:
            return self._signer.unsign(value, max_age=max_age_seconds).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    def write(self, response: Response, value: str, max_age_seconds: int) -> None:
        response.set_cookie(
            self.name,
            self._signer.sign(value).decode(),
            max_age=max_age_seconds,
            path="/",
            secure=self._secure,
            httponly=True,
            samesite=self._same_site,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            self.name, path="/", secure=self._secure, httponly=True, samesite=self._same_site
        )


class BrowserCookies:
    """Reads and writes the session and login cookies."""

    def __init__(self, secret: str, *, secure: bool, session_max_age_seconds: int) -> None:
        self._session_max_age = session_max_age_seconds
        self.session = _SignedCookie(
            "parley-session", secret, salt="parley.bff.session", secure=secure, same_site="strict"
        )
        self.login = _SignedCookie(
            "parley-login", secret, salt="parley.bff.login", secure=secure, same_site="lax"
        )

    def session_id(self, connection: HTTPConnection) -> str | None:
        """The session id the browser presents (HTTP request or WebSocket handshake)."""
        return self.session.read(connection, self._session_max_age)

    def set_session_id(self, response: Response, session_id: str, max_age_seconds: int) -> None:
        self.session.write(response, session_id, max_age_seconds)

    def clear_session_id(self, response: Response) -> None:
        self.session.clear(response)

    def login_binding(self, connection: HTTPConnection) -> str | None:
        """The id that binds logins in progress to this browser, if it has one."""
        return self.login.read(connection, LOGIN_COOKIE_MAX_AGE_SECONDS)

    def set_login_binding(self, response: Response, binding: str) -> None:
        self.login.write(response, binding, LOGIN_COOKIE_MAX_AGE_SECONDS)
