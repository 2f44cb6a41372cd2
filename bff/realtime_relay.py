"""``/realtime``: the browser's WebSocket, relayed to realtime_service as the signed-in user.

The handshake is accepted only from the BFF's own origin (a WebSocket carries cookies but no
CSRF header, so ``Origin`` is the cross-site defence) and with a live session. The relay then
opens a socket to realtime_service presenting the session's access token — the same credential
every service verifies — and copies frames both ways until either side closes.

A relayed socket lives no longer than its session: it closes when the session ends here
(``session.ended`` on Redis, from logout or back-channel logout in any BFF process), and every
``SESSION_CHECK_SECONDS`` it checks that the session has not expired. Client frames are rate
limited; frames larger than the server's limit are refused by uvicorn itself (close 1009); and
backpressure is end to end — the relay awaits each send before reading the next frame, so a
slow browser slows its upstream socket instead of growing a queue here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final
from urllib.parse import urlsplit

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bff.authentication import BrowserAuthentication
from bff.sessions import SESSION_ENDED_TOPIC, Session, SessionStore
from servicekit.app import WEBSOCKET_MAX_FRAME_BYTES
from servicekit.errors import ParleyError
from servicekit.events import Event, EventBus
from servicekit.logging import REQUEST_ID_HEADER, current_request_id

logger = logging.getLogger("bff.realtime")

# RFC 6455 close codes, and Parley's own in the 4000–4999 range left to applications.
NORMAL_CLOSURE: Final = 1000
POLICY_VIOLATION: Final = 1008  # foreign origin, no session, or too many frames
SERVICE_RESTART: Final = 1012  # realtime_service went away: reconnect
TRY_AGAIN_LATER: Final = 1013  # realtime_service or the provider is unreachable right now
SESSION_ENDED: Final = 4001  # signed out, or the session expired: sign in again

# Seconds between checks that the session is still alive; bounds how long a socket can outlive
# a session that expired quietly (a Redis TTL publishes nothing).
SESSION_CHECK_SECONDS: Final = 15.0
# Seconds to open the upstream socket before telling the browser to try later.
UPSTREAM_OPEN_TIMEOUT_SECONDS: Final = 5.0
# Client frames: typing, presence, acks, pings and resumes are a handful a second; a burst of
# 40 then 20 a second is generous for a person and stops a runaway client.
FRAME_BURST: Final = 40
FRAMES_PER_SECOND: Final = 20.0


class FrameRateLimiter:
    """A token bucket: ``allow()`` is False once a client sends faster than the rate."""

    def __init__(
        self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = float(burst)
        self._per_second = per_second
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def allow(self) -> bool:
        now = self._clock()
        elapsed, self._updated = now - self._updated, now
        self._tokens = min(self._capacity, self._tokens + elapsed * self._per_second)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class LiveSockets:
    """The relayed sockets open in this process, by session, so they can be ended together."""

    def __init__(self) -> None:
        self._ended: dict[str, set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def watch(self, public_id: str) -> Iterator[asyncio.Event]:
        ended = asyncio.Event()
        self._ended[public_id].add(ended)
        try:
            yield ended
        finally:
            self._ended[public_id].discard(ended)
            if not self._ended[public_id]:
                del self._ended[public_id]

    def end(self, public_id: str) -> None:
        for ended in self._ended.get(public_id, ()):
            ended.set()

    def end_all(self) -> None:
        """Make every socket re-check its session (after missing session events)."""
        for events in self._ended.values():
            for ended in events:
                ended.set()


class RealtimeRelay:
    """The ``/realtime`` endpoint and the session-ended subscription that closes its sockets."""

    def __init__(
        self,
        *,
        authentication: BrowserAuthentication,
        sessions: SessionStore,
        redis: Redis,
        namespace: str,
        public_url: str,
        realtime_url: str,
    ) -> None:
        self._authentication = authentication
        self._sessions = sessions
        self._events = EventBus(redis, namespace)
        public = urlsplit(public_url)
        self._allowed_origin = f"{public.scheme}://{public.netloc}"
        upstream = urlsplit(realtime_url)
        scheme = "wss" if upstream.scheme == "https" else "ws"
        self._upstream_url = f"{scheme}://{upstream.netloc}{upstream.path.rstrip('/')}/ws"
        self._live = LiveSockets()

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/realtime", self.relay)]

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Listen for ended sessions while the app runs."""

        async def on_session_ended(event: Event) -> None:
            session = event.data.get("session")
            if isinstance(session, str):
                self._live.end(session)

        async def on_reconnect() -> None:
            # Ends announced while disconnected were missed: every socket re-checks.
            self._live.end_all()

        subscriber = self._events.subscribe(
            on_session_ended, topics=[SESSION_ENDED_TOPIC], on_reconnect=on_reconnect
        )
        async with subscriber:
            yield

    async def relay(self, websocket: WebSocket) -> None:
        if websocket.headers.get("origin") != self._allowed_origin:
            logger.info("realtime refused: foreign origin")
            await websocket.close(POLICY_VIOLATION)
            return
        session = await self._authentication.session_for(websocket)
        if session is None:
            logger.info("realtime refused: no session")
            await websocket.close(POLICY_VIOLATION)
            return
        try:
            token = await self._authentication.access_token_for(websocket)
        except ParleyError as error:
            logger.info("realtime refused", extra={"code": error.instance_code})
            await websocket.close(POLICY_VIOLATION if error.status < 500 else TRY_AGAIN_LATER)
            return
        await websocket.accept()
        try:
            upstream = await connect(
                self._upstream_url,
                additional_headers=_upstream_headers(token),
                max_size=WEBSOCKET_MAX_FRAME_BYTES,
                open_timeout=UPSTREAM_OPEN_TIMEOUT_SECONDS,
            )
        except (OSError, TimeoutError, InvalidHandshake) as error:
            logger.warning("realtime_service unreachable", extra={"error": type(error).__name__})
            await websocket.close(TRY_AGAIN_LATER, "realtime service unavailable")
            return
        async with upstream:
            await self._copy_until_closed(websocket, upstream, session)

    async def _copy_until_closed(
        self, websocket: WebSocket, upstream: ClientConnection, session: Session
    ) -> None:
        with self._live.watch(session.public_id) as ended:
            tasks = {
                asyncio.create_task(_client_to_upstream(websocket, upstream), name="from client"),
                asyncio.create_task(_upstream_to_client(upstream, websocket), name="to client"),
                asyncio.create_task(self._watch_session(session, ended), name="session watch"),
            }
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            code, reason = next(iter(done)).result()
        if code != NORMAL_CLOSURE or reason:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code, reason)
        logger.info("realtime closed", extra={"session": session.public_id, "code": code})

    async def _watch_session(self, session: Session, ended: asyncio.Event) -> tuple[int, str]:
        """Returns once the session is over: announced, or found gone at a periodic check."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), SESSION_CHECK_SECONDS)
            ended.clear()
            if await self._sessions.get(session.id, touch=False) is None:
                return SESSION_ENDED, "session ended"


def _upstream_headers(token: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    request_id = current_request_id()
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


async def _client_to_upstream(websocket: WebSocket, upstream: ClientConnection) -> tuple[int, str]:
    limiter = FrameRateLimiter(FRAME_BURST, FRAMES_PER_SECOND)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return NORMAL_CLOSURE, ""
        if not limiter.allow():
            return POLICY_VIOLATION, "too many frames"
        text = message.get("text")
        if text is None:
            return POLICY_VIOLATION, "frames are JSON text"
        try:
            await upstream.send(text)
        except ConnectionClosed:
            return SERVICE_RESTART, "realtime service closed"


async def _upstream_to_client(upstream: ClientConnection, websocket: WebSocket) -> tuple[int, str]:
    try:
        async for frame in upstream:
            await websocket.send_text(frame if isinstance(frame, str) else frame.decode())
    except ConnectionClosed:
        pass
    except (WebSocketDisconnect, RuntimeError):
        return NORMAL_CLOSURE, ""  # the browser went away while a frame was on its way
    return SERVICE_RESTART, "realtime service closed"
