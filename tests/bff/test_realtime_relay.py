"""``/realtime``: only the BFF's own origin with a live session gets a socket, relayed to
realtime_service as the signed-in user, and the socket dies with the session."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import bff.realtime_relay
from bff.realtime_relay import FRAME_BURST
from realtime_service.app import create_app as create_realtime_app
from realtime_service.settings import load_settings as load_realtime_settings
from servicekit.app import WEBSOCKET_MAX_FRAME_BYTES
from tests.bff.conftest import (
    Browser,
    RunningBff,
    bff_environment,
    open_browser,
    running_bff,
)
from tests.bff.scripted_provider import ScriptedProvider
from tests.support.issuer import DEFAULT_AUDIENCE
from tests.support.servers import free_port, serve_in_loop

# Seconds to wait for a close the relay should make at once, or at its next session check.
CLOSE_DEADLINE = 5.0


@pytest.fixture(scope="module")
async def realtime_url(module_provider: ScriptedProvider, redis_url: str) -> AsyncIterator[str]:
    settings = load_realtime_settings(
        {
            "OIDC_ISSUER": module_provider.url,
            "API_AUDIENCE": DEFAULT_AUDIENCE,
            "REDIS_URL": redis_url,
        }
    )
    async with serve_in_loop(create_realtime_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
async def relay_bff(
    module_provider: ScriptedProvider, realtime_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[RunningBff]:
    environ = bff_environment(
        module_provider.url, redis_url, redis_namespace, REALTIME_URL=realtime_url
    )
    async with running_bff(environ) as running:
        yield running


@pytest.fixture
async def signed_in(relay_bff: RunningBff, provider: ScriptedProvider) -> AsyncIterator[Browser]:
    async with open_browser(relay_bff) as browser:
        assert (await browser.sign_in()).status_code in (302, 303)
        yield browser


def socket_url(bff: RunningBff) -> str:
    return bff.url.replace("http://", "ws://") + "/realtime"


@contextlib.asynccontextmanager
async def open_socket(
    browser: Browser, *, origin: str | None = None, cookie: str | None = None
) -> AsyncIterator[ClientConnection]:
    headers = {"Origin": browser.bff.url if origin is None else origin}
    session_cookie = browser.session_cookie() if cookie is None else cookie
    if session_cookie:
        headers["Cookie"] = f"parley-session={session_cookie}"
    async with connect(
        socket_url(browser.bff), additional_headers=headers, max_size=None
    ) as socket:
        yield socket


async def ping(socket: ClientConnection) -> object:
    await socket.send(json.dumps({"type": "ping"}))
    return json.loads(await asyncio.wait_for(socket.recv(), CLOSE_DEADLINE))


async def close_code(socket: ClientConnection) -> int | None:
    """The close code the server sends, waiting for it at most ``CLOSE_DEADLINE``."""
    async with asyncio.timeout(CLOSE_DEADLINE):
        try:
            while True:
                await socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def test_a_signed_in_browser_reaches_realtime_service_through_the_relay(
    signed_in: Browser,
) -> None:
    async with open_socket(signed_in) as socket:
        assert await ping(socket) == {"type": "pong"}
        assert await ping(socket) == {"type": "pong"}


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://evil.example", id="foreign-origin"),
        pytest.param("http://127.0.0.1:1", id="same-host-other-port"),
        pytest.param("null", id="opaque-origin"),
    ],
)
async def test_a_foreign_origin_is_refused_even_with_a_valid_session(
    signed_in: Browser, origin: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(signed_in, origin=origin):
            pass
    assert refused.value.response.status_code == 403


async def test_a_handshake_without_origin_is_refused(signed_in: Browser) -> None:
    headers = {"Cookie": f"parley-session={signed_in.session_cookie()}"}
    with pytest.raises(InvalidStatus):
        async with connect(socket_url(signed_in.bff), additional_headers=headers):
            pass


@pytest.mark.parametrize("cookie", ["", "forged.cookie.value"])
async def test_a_handshake_without_a_live_session_is_refused(
    relay_bff: RunningBff, cookie: str
) -> None:
    async with open_browser(relay_bff) as anonymous:
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(anonymous, cookie=cookie):
                pass
    assert refused.value.response.status_code == 403


async def test_a_handshake_with_an_expired_session_is_refused(signed_in: Browser) -> None:
    signed_in.bff.clock.advance(signed_in.bff.settings.session_idle_timeout_seconds + 1)
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(signed_in):
                pass
    finally:
        signed_in.bff.clock.offset = 0.0
    assert refused.value.response.status_code == 403


async def test_logout_closes_the_socket(signed_in: Browser) -> None:
    async with open_socket(signed_in) as socket:
        assert await ping(socket) == {"type": "pong"}
        logout_url = (await signed_in.user()).json()["logout_url"]
        assert (await signed_in.http.get(logout_url)).status_code == 303
        assert await close_code(socket) == bff.realtime_relay.SESSION_ENDED


async def test_logout_through_another_bff_process_closes_the_socket(
    signed_in: Browser, module_provider: ScriptedProvider, redis_url: str, redis_namespace: str
) -> None:
    environ = bff_environment(module_provider.url, redis_url, redis_namespace)
    other_port = free_port()
    async with (
        running_bff(
            environ | {"PUBLIC_URL": signed_in.bff.settings.public_url}, port=other_port
        ) as other,
        open_browser(other) as same_browser_elsewhere,
    ):
        same_browser_elsewhere.http.cookies.set("parley-session", signed_in.session_cookie() or "")
        async with open_socket(signed_in) as socket:
            assert await ping(socket) == {"type": "pong"}
            user = await same_browser_elsewhere.user()
            logout = await same_browser_elsewhere.http.get(user.json()["logout_url"])
            assert logout.status_code == 303
            assert await close_code(socket) == bff.realtime_relay.SESSION_ENDED


async def test_a_session_that_expires_quietly_closes_its_socket(
    signed_in: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bff.realtime_relay, "SESSION_CHECK_SECONDS", 0.1)
    async with open_socket(signed_in) as socket:
        assert await ping(socket) == {"type": "pong"}
        # Past the idle timeout on the BFF's clock: the session is over without any event.
        signed_in.bff.clock.advance(signed_in.bff.settings.session_idle_timeout_seconds + 1)
        try:
            assert await close_code(socket) == bff.realtime_relay.SESSION_ENDED
        finally:
            signed_in.bff.clock.offset = 0.0


async def test_a_client_flooding_frames_is_disconnected(signed_in: Browser) -> None:
    async with open_socket(signed_in) as socket:
        for _ in range(FRAME_BURST * 3):
            try:
                await socket.send(json.dumps({"type": "ping"}))
            except ConnectionClosed:
                break
        assert await close_code(socket) == bff.realtime_relay.POLICY_VIOLATION


async def test_an_oversized_frame_is_refused_with_1009(signed_in: Browser) -> None:
    async with open_socket(signed_in) as socket:
        await socket.send(json.dumps({"type": "ping", "pad": "x" * WEBSOCKET_MAX_FRAME_BYTES}))
        assert await close_code(socket) == 1009


async def test_realtime_service_unreachable_tells_the_browser_to_try_later(
    module_provider: ScriptedProvider, redis_url: str, redis_namespace: str
) -> None:
    environ = bff_environment(
        module_provider.url,
        redis_url,
        redis_namespace,
        REALTIME_URL=f"http://127.0.0.1:{free_port()}",
    )
    async with running_bff(environ) as lonely, open_browser(lonely) as browser:
        module_provider.reset()
        await browser.sign_in()
        async with open_socket(browser) as socket:
            assert await close_code(socket) == bff.realtime_relay.TRY_AGAIN_LATER
