"""Logins in progress: what the callback needs to finish one, kept server-side in Redis.

``{ns}:bff:login:{state}`` holds the nonce, the PKCE verifier, where to go afterwards and the
binding id of the browser that started the login (its login cookie). Redis expires a state after
``LOGIN_STATE_TTL_SECONDS``, so abandoned logins prune themselves, and the callback takes a state
with GETDEL, so it can be used once only.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis

from bff.cookies import LOGIN_COOKIE_MAX_AGE_SECONDS

LOGIN_STATE_TTL_SECONDS: Final = LOGIN_COOKIE_MAX_AGE_SECONDS  # 10 minutes to sign in
DEFAULT_RETURN_URL: Final = "/"
MAX_RETURN_URL_LENGTH: Final = 2048
# What a local path may contain: printable ASCII without backslash (browsers read "\" as "/").
_LOCAL_PATH: Final = re.compile(r"/[\x21-\x5b\x5d-\x7e]*")


@dataclass(frozen=True)
class LoginState:
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    return_url: str
    browser_binding: str  # the login cookie's id in the browser that started this login
    # The session of the browser when it started (it sends its Strict cookie only then): ended
    # once the new one exists, instead of lingering until it times out.
    replaces_session: str | None

    def started_by(self, browser_binding: str | None) -> bool:
        return browser_binding is not None and hmac.compare_digest(
            self.browser_binding, browser_binding
        )


def safe_return_url(candidate: str | None) -> str:
    """``candidate`` if it is a path on this site, else ``/``.

    Refused: absolute and scheme-relative URLs (``https://evil``, ``//evil``), backslashes
    (``/\\evil``), control characters and whitespace (browsers drop tabs and newlines, turning
    ``/\\t/evil`` into ``//evil``), and any of these hidden behind percent-encoding.
    """
    if not candidate or len(candidate) > MAX_RETURN_URL_LENGTH:
        return DEFAULT_RETURN_URL
    decoded = candidate
    for _ in range(3):  # a double-encoded trick shows after two rounds; three to be safe
        if not _is_local_path(decoded):
            return DEFAULT_RETURN_URL
        decoded = unquote(decoded)
    return candidate if _is_local_path(decoded) else DEFAULT_RETURN_URL


def _is_local_path(value: str) -> bool:
    if not _LOCAL_PATH.fullmatch(value) or value.startswith("//"):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


class LoginStates:
    """Stores each login's state until its callback takes it, once."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    def _key(self, state: str) -> str:
        return f"{self._namespace}:bff:login:{state}"

    async def save(self, state: str, login: LoginState) -> None:
        await self._redis.set(
            self._key(state), json.dumps(asdict(login)), ex=LOGIN_STATE_TTL_SECONDS
        )

    async def take(self, state: str) -> LoginState | None:
        """The login ``state`` names, removed so no second callback can use it; None if there
        is none (never started, already used, or expired)."""
        raw = await self._redis.getdel(self._key(state))
        if raw is None:
            return None
        try:
            return LoginState(**json.loads(raw))
        except (TypeError, ValueError):
            return None
