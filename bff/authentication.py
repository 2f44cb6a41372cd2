"""From a browser's session cookie to a live session and a usable access token.

This is what the API proxy and the WebSocket relay call; both methods take any
``HTTPConnection``, an HTTP request or a WebSocket handshake.

Refreshing is single-flight per session across every BFF process: one refresh at a time per
session, however many requests need a new token at once. Within a process the callers share one
task; across processes that task takes a Redis lock (``SET NX PX``) before calling the provider,
and a process that finds the lock taken waits for the session in Redis to show fresh tokens. The
refresh token is rotated by most providers and each one is good for one use, so two concurrent
refreshes would end with one of them holding a revoked token (or, with reuse detection, with
every token of the session revoked).

A refresh the provider rejects ends the session; a provider that cannot be reached does not (the
caller gets a 503 and may retry).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from bff.cookies import BrowserCookies
from bff.oidc import OpenIdProvider, ProviderRejected
from bff.sessions import Session, SessionStore
from servicekit.errors import Unauthorized, UpstreamUnavailable

logger = logging.getLogger("bff.authentication")

# Milliseconds. Longer than a refresh can take (the provider client's timeouts add up to ~12 s),
# so the lock outlives its holder only when the holder died; then it lapses by itself.
REFRESH_LOCK_TTL_MS: Final = 15_000
# Seconds. How often a process waiting on another's refresh looks at the session again.
REFRESH_POLL_SECONDS: Final = 0.02
# Releases the lock only if it is still ours (it may have lapsed and been taken by another).
_RELEASE_LOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _session_ended() -> Unauthorized:
    return Unauthorized("Your session has ended; sign in again.", code="session_ended")


class BrowserAuthentication:
    """Finds the caller's session and hands out its access token, refreshing it when due."""

    def __init__(
        self,
        *,
        cookies: BrowserCookies,
        sessions: SessionStore,
        provider: OpenIdProvider,
        redis: Redis,
        namespace: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cookies = cookies
        self._sessions = sessions
        self._provider = provider
        self._redis = redis
        self._namespace = namespace
        self._clock = clock
        self._release_lock = redis.register_script(_RELEASE_LOCK)
        self._refreshes: dict[str, asyncio.Task[str]] = {}  # in flight in this process

    async def session_for(self, connection: HTTPConnection) -> Session | None:
        """The live session whose cookie ``connection`` carries, if any."""
        session_id = self._cookies.session_id(connection)
        if session_id is None:
            return None
        return await self._sessions.get(session_id)

    async def require_session(self, connection: HTTPConnection) -> Session:
        """The live session of ``connection``; ``Unauthorized`` when there is none."""
        session = await self.session_for(connection)
        if session is None:
            raise Unauthorized("Sign in first.", code="no_session")
        return session

    async def access_token_for(self, connection: HTTPConnection) -> str:
        """The access token of the connection's session, refreshed first when it is due.

        Raises ``Unauthorized`` without a live session and ``UpstreamUnavailable`` when a due
        refresh cannot reach the provider. The caller checks CSRF (``X-CSRF`` on HTTP, the
        ``Origin`` of a WebSocket) before a cookie gets a token used.
        """
        session = await self.require_session(connection)
        if not session.needs_refresh(self._clock()):
            return session.access_token
        task = self._refreshes.get(session.id)
        if task is None:
            task = asyncio.create_task(self._refresh_once(session.id))
            self._refreshes[session.id] = task
            task.add_done_callback(lambda _: self._refreshes.pop(session.id, None))
        # Shielded: a caller that gives up must not cancel the refresh the others wait on.
        return await asyncio.shield(task)

    async def _refresh_once(self, session_id: str) -> str:
        """A fresh access token for ``session_id``, refreshing unless another process does."""
        lock_key = f"{self._namespace}:bff:refresh-lock:{session_id}"
        lock_owner = secrets.token_hex(16)
        deadline = time.monotonic() + REFRESH_LOCK_TTL_MS / 1000
        while True:
            session = await self._sessions.get(session_id, touch=False)
            if session is None:
                raise _session_ended()
            if not session.needs_refresh(self._clock()):
                return session.access_token  # another process refreshed it
            if await self._redis.set(lock_key, lock_owner, nx=True, px=REFRESH_LOCK_TTL_MS):
                try:
                    # Read again under the lock: a refresh may have finished just before.
                    session = await self._sessions.get(session_id, touch=False)
                    if session is None:
                        raise _session_ended()
                    if not session.needs_refresh(self._clock()):
                        return session.access_token
                    return await self._refresh(session)
                finally:
                    await self._release_lock(keys=[lock_key], args=[lock_owner])
            if time.monotonic() >= deadline:
                raise UpstreamUnavailable("Renewing the session's access token takes too long.")
            await asyncio.sleep(REFRESH_POLL_SECONDS)

    async def _refresh(self, session: Session) -> str:
        assert session.refresh_token is not None  # needs_refresh is false without one
        try:
            tokens = await self._provider.refresh(session.refresh_token)
        except ProviderRejected as error:
            logger.info(
                "refresh rejected; ending the session",
                extra={"session": session.public_id, "error": error.error},
            )
            await self._sessions.end(session, "refresh_failed")
            raise _session_ended() from error
        refreshed = await self._sessions.store_refreshed_tokens(session, tokens)
        if refreshed is None:  # logged out while the refresh was in flight
            if tokens.refresh_token is not None:
                await self._provider.revoke(tokens.refresh_token)
            raise _session_ended()
        return refreshed.access_token
