"""The realtime WebSocket: authenticated at the handshake, frames answered, limits enforced."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from realtime_service.app import create_app
from realtime_service.settings import load_settings
from servicekit.app import WEBSOCKET_MAX_FRAME_BYTES
from tests.support.issuer import LocalIssuer, running_issuer
from tests.support.servers import serve_in_loop


@pytest.fixture(scope="module")
async def issuer() -> AsyncIterator[LocalIssuer]:
    async with running_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
async def realtime_url(issuer: LocalIssuer, redis_url: str) -> AsyncIterator[str]:
    settings = load_settings(
        {"OIDC_ISSUER": issuer.url, "API_AUDIENCE": issuer.audience, "REDIS_URL": redis_url}
    )
    async with serve_in_loop(create_app(settings)) as url:
        yield url.replace("http://", "ws://") + "/ws"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def exchange(connection: ClientConnection, frame: object) -> dict[str, object]:
    await connection.send(json.dumps(frame))
    reply: dict[str, object] = json.loads(await connection.recv())
    return reply


async def test_a_user_with_a_valid_token_gets_pong_for_ping(
    realtime_url: str, issuer: LocalIssuer
) -> None:
    async with connect(realtime_url, additional_headers=bearer(issuer.access_token())) as ws:
        assert await exchange(ws, {"type": "ping"}) == {"type": "pong"}


async def test_a_machine_client_with_a_valid_token_is_accepted(
    realtime_url: str, issuer: LocalIssuer
) -> None:
    token = issuer.machine_token("reports-bot")
    async with connect(realtime_url, additional_headers=bearer(token)) as ws:
        assert await exchange(ws, {"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, id="garbage-token"),
        pytest.param({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, id="wrong-scheme"),
    ],
)
async def test_a_handshake_without_a_valid_token_is_refused(
    realtime_url: str, headers: dict[str, str]
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(realtime_url, additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403


async def test_expired_and_foreign_audience_tokens_are_refused(
    realtime_url: str, issuer: LocalIssuer
) -> None:
    for token in (issuer.access_token(exp=1), issuer.access_token(aud="another-api")):
        with pytest.raises(InvalidStatus):
            async with connect(realtime_url, additional_headers=bearer(token)):
                pass


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param("{not json", "invalid_frame", id="malformed-json"),
        pytest.param("[1, 2]", "invalid_frame", id="not-an-object"),
        pytest.param('{"type": 7}', "invalid_frame", id="non-string-type"),
        pytest.param('{"type": "teleport"}', "unsupported_type", id="unknown-type"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    realtime_url: str, issuer: LocalIssuer, frame: str, code: str
) -> None:
    async with connect(realtime_url, additional_headers=bearer(issuer.access_token())) as ws:
        await ws.send(frame)
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error"
        assert reply["data"]["code"] == code
        assert await exchange(ws, {"type": "ping"}) == {"type": "pong"}


async def test_an_oversized_frame_closes_the_socket_with_1009(
    realtime_url: str, issuer: LocalIssuer
) -> None:
    async with connect(
        realtime_url, additional_headers=bearer(issuer.access_token()), max_size=None
    ) as ws:
        await ws.send(json.dumps({"type": "ping", "pad": "x" * WEBSOCKET_MAX_FRAME_BYTES}))
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
