"""The /api/* proxy, between a real HTTP client and real services, over real HTTP.

Each service is an ``EchoService`` served by uvicorn: it records every request it reads whole and
answers with what a proxy must not pass on (cookies, hop-by-hop headers). The BFF under test is the
proxy mounted in the shared service skeleton, served by uvicorn too. Requests that httpx would
normalise (dot segments, absolute-form targets) are written to a socket byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from bff.api_routes import (
    API_ROUTES,
    CONVERSATIONS,
    IDENTITY,
    MESSAGES,
    SERVICES,
    ApiRoute,
    ApiRouteTable,
)
from bff.proxy import ApiProxy
from servicekit.app import create_service_app
from servicekit.errors import Unauthorized
from servicekit.settings import ServiceSettings, load_service_settings
from tests.support.servers import free_port, serve_in_loop

CONVERSATION_ID = "0191f1c2-7d3e-7a4b-9c5d-6e7f8a9b0c1d"
USER_ID = "0191f1c2-7d3e-7a4b-9c5d-000000000002"
THUMBS_UP = quote("👍")

LIVE_SESSION = "live"
SESSION_ACCESS_TOKEN = "session-access-token"
BROWSER = {"Cookie": f"session={LIVE_SESSION}", "X-CSRF": "1"}
MACHINE = {"Authorization": "Bearer machine-token"}
JSON = {"Content-Type": "application/json"}

MAX_BODY_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Seconds; short so the slow-service test is quick, far above a loopback echo's answer time.
READ_TIMEOUT = 0.5
CHUNK_BYTES = 64 * 1024
PATTERN = bytes(range(256)) * (CHUNK_BYTES // 256)


@dataclass(frozen=True)
class Received:
    """A request a service read whole: the path and query raw, as they arrived."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class EchoService:
    """A stand-in for one Parley service, steered by the query string.

    ``respond_bytes=N`` streams N bytes back in 64 KiB chunks (under a Content-Length with
    ``declare_length``; pausing after the first chunk until ``release`` with ``hold``);
    ``delay_secs=S`` answers after S seconds; otherwise it answers JSON naming itself.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = ""
        self.reset()

    def reset(self) -> None:
        self.received: list[Received] = []
        self.broken_requests = 0
        self.body_arriving = asyncio.Event()
        self.release = asyncio.Event()

    def only_request(self) -> Received:
        assert len(self.received) == 1, self.received
        return self.received[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.broken_requests += 1
                return
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
            if more_body:
                self.body_arriving.set()
        headers = [(name.decode(), value.decode("latin-1")) for name, value in scope["headers"]]
        query = scope["query_string"].decode()
        self.received.append(
            Received(scope["method"], scope["raw_path"].decode(), query, headers, bytes(body))
        )
        options = dict(parse_qsl(query))
        if "delay_secs" in options:
            await asyncio.sleep(float(options["delay_secs"]))
        if "respond_bytes" in options:
            await self._stream(send, int(options["respond_bytes"]), options)
        else:
            await self._echo(send, dict(scope["headers"]).get(b"x-request-id", b"none"))

    async def _echo(self, send: Send, request_id: bytes) -> None:
        body = json.dumps({"service": self.name}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-served-by", self.name.encode()),
            (b"x-request-id", request_id),
            # All of these are for the proxy alone, never for the browser.
            (b"set-cookie", b"upstream_session=leaked; Path=/"),
            (b"connection", b"x-upstream-hop"),
            (b"x-upstream-hop", b"proxy only"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b"Basic"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Send, size: int, options: dict[str, str]) -> None:
        headers = [(b"content-type", b"application/octet-stream")]
        if "declare_length" in options:
            headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for offset in range(0, size, CHUNK_BYTES):
            chunk = PATTERN[: min(CHUNK_BYTES, size - offset)]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if offset == 0 and "hold" in options:
                # Bounded, so a failing test cannot leave the server unable to shut down.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), timeout=5)
        await send({"type": "http.response.body", "body": b""})


def streamed_payload(size: int) -> bytes:
    return b"".join(PATTERN[: min(CHUNK_BYTES, size - o)] for o in range(0, size, CHUNK_BYTES))


async def access_token_for_session(request: Request) -> str:
    """The sessions' stand-in: one live session, identified by its cookie."""
    if request.cookies.get("session") != LIVE_SESSION:
        raise Unauthorized("No live session.", code="session_required")
    return SESSION_ACCESS_TOKEN


def build_bff(proxy: ApiProxy) -> Starlette:
    return create_service_app(
        load_service_settings(ServiceSettings, "bff", {}), routes=proxy.routes()
    )


def serve_bff(app: Starlette, *, http: str = "auto") -> AbstractAsyncContextManager[str]:
    """Serve the BFF with the HTTP parser chosen and uvicorn's own X-Forwarded-For handling off
    (it trusts 127.0.0.1, where every test client is)."""
    return serve_in_loop(app, http=http, proxy_headers=False, lifespan="off")


async def send_raw(base_url: str, target: str, host: str = "bff.example") -> tuple[int, bytes]:
    """GET ``target`` written as it is (httpx would normalise it); the status and body."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer machine-token\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait up to 2 s for ``condition``, which the server makes true just after answering."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


def concrete_path(template: str) -> str:
    return (
        template.replace("{id}", CONVERSATION_ID)
        .replace("{user_id}", USER_ID)
        .replace("{emoji}", THUMBS_UP)
    )


def problem_code(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()["code"]


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[dict[str, EchoService]]:
    echoes = {name: EchoService(name) for name in (*SERVICES, "evil")}
    async with contextlib.AsyncExitStack() as stack:
        for echo in echoes.values():
            echo.url = await stack.enter_async_context(serve_in_loop(echo))
        yield echoes


@pytest.fixture(autouse=True)
def _fresh_services(services: dict[str, EchoService]) -> None:
    for echo in services.values():
        echo.reset()


@pytest.fixture
def evil(services: dict[str, EchoService]) -> EchoService:
    """A live server the proxy is not configured for; nothing may ever reach it."""
    return services["evil"]


def nothing_reached(services: dict[str, EchoService]) -> bool:
    return not any(echo.received or echo.broken_requests for echo in services.values())


@pytest.fixture(scope="module")
async def bff_app(services: dict[str, EchoService]) -> AsyncIterator[Starlette]:
    proxy = ApiProxy(
        {name: services[name].url for name in SERVICES},
        access_token_for=access_token_for_session,
        max_body_bytes=MAX_BODY_BYTES,
        max_response_bytes=MAX_RESPONSE_BYTES,
        timeout=httpx.Timeout(connect=1.0, read=READ_TIMEOUT, write=1.0, pool=1.0),
    )
    try:
        yield build_bff(proxy)
    finally:
        await proxy.aclose()


@pytest.fixture(scope="module")
async def bff_url(bff_app: Starlette) -> AsyncIterator[str]:
    async with serve_bff(bff_app) as url:
        yield url


@pytest.fixture(scope="module")
async def client(bff_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bff_url, timeout=5.0, trust_env=False) as http_client:
        yield http_client


@pytest.fixture(scope="module")
async def sparse_bff_url() -> AsyncIterator[str]:
    """A BFF without identity_service (external provider) whose conversations_service is down."""
    proxy = ApiProxy(
        {IDENTITY: "", CONVERSATIONS: f"http://127.0.0.1:{free_port()}"},
        access_token_for=access_token_for_session,
    )
    try:
        async with serve_bff(build_bff(proxy)) as url:
            yield url
    finally:
        await proxy.aclose()


# --- routing --------------------------------------------------------------------------------


def _route_cases() -> list[Any]:
    return [
        pytest.param(route, method, id=f"{method} {route.path}")
        for route in API_ROUTES
        for method in sorted(route.methods)
    ]


@pytest.mark.parametrize(("route", "method"), _route_cases())
async def test_every_allowlisted_route_reaches_its_service_only(
    route: ApiRoute, method: str, client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    path = concrete_path(route.path)
    body = {"json": {"probe": 1}} if method in {"POST", "PUT", "PATCH"} else {}
    response = await client.request(method, f"{path}?probe=1", headers=MACHINE, **body)

    assert response.status_code == 200
    assert response.json() == {"service": route.upstream}
    received = services[route.upstream].only_request()
    assert (received.method, received.path, received.query) == (method, path, "probe=1")
    assert nothing_reached({n: s for n, s in services.items() if n != route.upstream})


def test_route_table_refuses_templates_that_could_match_the_same_path() -> None:
    by_id = ApiRoute("/api/things/{id}", frozenset({"GET"}), CONVERSATIONS)
    by_name = ApiRoute("/api/things/mine", frozenset({"GET"}), MESSAGES)

    with pytest.raises(ValueError, match="can match the same path"):
        ApiRouteTable([by_id, by_name])


def test_a_path_parameter_without_a_check_is_refused() -> None:
    with pytest.raises(ValueError, match="no check for the parameter 'slug'"):
        ApiRoute("/api/things/{slug}", frozenset({"GET"}), CONVERSATIONS)


def test_an_unknown_service_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown services"):
        ApiProxy(
            {"conversation_service": "http://127.0.0.1:1"},
            access_token_for=access_token_for_session,
        )


@pytest.mark.parametrize(
    ("method", "suffix", "owner"),
    [
        ("POST", "/messages", MESSAGES),
        ("GET", "/messages", MESSAGES),
        ("POST", "/read", MESSAGES),
        ("GET", "/members", CONVERSATIONS),
        ("POST", "/invitations", CONVERSATIONS),
        ("GET", "", CONVERSATIONS),
    ],
)
async def test_paths_under_a_conversation_go_to_the_service_that_owns_them(
    method: str,
    suffix: str,
    owner: str,
    client: httpx.AsyncClient,
    services: dict[str, EchoService],
) -> None:
    body = {"json": {"seq": 1}} if method == "POST" else {}
    path = f"/api/conversations/{CONVERSATION_ID}{suffix}"
    response = await client.request(method, path, headers=MACHINE, **body)

    assert response.json() == {"service": owner}
    assert services[owner].only_request().path == path


async def test_query_string_reaches_the_service_as_sent(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    query = "q=caf%C3%A9%20au%20lait&limit=5&q=%2F..%2F"
    await client.get(f"/api/search?{query}", headers=MACHINE)

    assert services[MESSAGES].only_request().query == query


@pytest.mark.parametrize(
    "path",
    [
        "/api/conversation",
        "/api/admin/users",
        "/api/healthz",
        "/api/openapi.json",
        f"/api/conversations/{CONVERSATION_ID}/secrets",
        f"/api/messages/{CONVERSATION_ID}/reactions",
        "/api/conversations_service/metrics",
        "/api/%61dmin",
        "/api/search%3Fq=x",
        # Parameters that are not what the route takes:
        "/api/conversations/not-a-uuid",
        "/api/conversations/42",
        f"/api/conversations/{CONVERSATION_ID}0",
        f"/api/conversations/{{{CONVERSATION_ID}}}",
        f"/api/users/{CONVERSATION_ID.replace('-', '')}",
        f"/api/messages/{CONVERSATION_ID}/reactions/{quote('x' * 65)}",
        f"/api/messages/{CONVERSATION_ID}/reactions/%FF",
    ],
)
async def test_path_outside_the_allowlist_is_404_and_reaches_nothing(
    path: str, client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.get(path, headers=MACHINE)

    assert response.status_code == 404
    assert problem_code(response) == "not_found"
    assert nothing_reached(services)


async def test_longest_reasonable_emoji_is_accepted(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    kiss = quote("👩🏻\u200d❤️\u200d💋\u200d👨🏼")  # ten code points, 35 bytes
    path = f"/api/messages/{CONVERSATION_ID}/reactions/{kiss}"
    response = await client.put(path, headers=MACHINE)

    assert response.status_code == 200
    assert services[MESSAGES].only_request().path == path


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/conversations", "GET, POST"),
        ("PUT", f"/api/conversations/{CONVERSATION_ID}", "DELETE, GET, PATCH"),
        ("GET", f"/api/messages/{CONVERSATION_ID}", "DELETE, PATCH"),
        ("GET", f"/api/conversations/{CONVERSATION_ID}/members/{USER_ID}", "DELETE, PATCH"),
        ("POST", "/api/search", "GET"),
        ("HEAD", "/api/unread", "GET"),
        ("OPTIONS", "/api/conversations", "GET, POST"),
        ("TRACE", "/api/unread", "GET"),
    ],
)
async def test_method_outside_the_allowlist_is_405_and_reaches_nothing(
    method: str,
    path: str,
    allowed: str,
    client: httpx.AsyncClient,
    services: dict[str, EchoService],
) -> None:
    response = await client.request(method, path, headers=MACHINE)

    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert nothing_reached(services)


@pytest.mark.parametrize(
    "target",
    [
        "/api/conversations/../users",
        "/api/conversations/%2e%2e/users",
        "/api/conversations/%2E%2E/users",
        "/api/./unread",
        "/api/%2e/unread",
        f"/api/conversations/{CONVERSATION_ID}%2Fmessages",
        f"/api/conversations/{CONVERSATION_ID}%2fmessages",
        f"/api/conversations/{CONVERSATION_ID}%5Cmessages",
        f"/api/conversations\\{CONVERSATION_ID}",
        "/api//unread",
        "/api/unread/",
        "/api/unread%00",
        "/api/unread%09",
        f"/api/messages/{CONVERSATION_ID}/reactions/%2e%2e",
        "/api/unread%",
    ],
)
async def test_path_that_could_be_read_two_ways_is_400_and_reaches_nothing(
    target: str, bff_url: str, services: dict[str, EchoService]
) -> None:
    status, body = await send_raw(bff_url, target)

    assert status == 400
    assert json.loads(body)["code"] == "invalid_path"
    assert nothing_reached(services)


async def test_path_with_an_encoded_line_break_reaches_nothing(
    bff_url: str, services: dict[str, EchoService]
) -> None:
    """Starlette's /api mount does not match a decoded line break, so the app's 404 answers."""
    status, _ = await send_raw(bff_url, "/api/unread%0d%0aX-Injected:%201")

    assert status == 404
    assert nothing_reached(services)


@pytest.mark.parametrize(
    ("parser", "status", "answered_by"), [("h11", 404, None), ("httptools", 200, MESSAGES)]
)
async def test_absolute_form_target_never_reaches_the_host_it_names(
    parser: str,
    status: int,
    answered_by: str | None,
    bff_app: Starlette,
    services: dict[str, EchoService],
    evil: EchoService,
) -> None:
    """h11 passes the target on as sent, which is no /api/ path, so the router answers 404;
    httptools keeps only its path, so the request goes to the configured service like any other."""
    evil_host = httpx.URL(evil.url).netloc.decode()
    async with serve_bff(bff_app, http=parser) as url:
        answer_status, _ = await send_raw(url, f"{evil.url}/api/unread", host=evil_host)

    assert answer_status == status
    assert not evil.received
    if answered_by is None:
        assert nothing_reached(services)
    else:
        assert services[answered_by].only_request().path == "/api/unread"


async def test_host_header_does_not_choose_the_service(
    client: httpx.AsyncClient, services: dict[str, EchoService], evil: EchoService
) -> None:
    evil_host = httpx.URL(evil.url).netloc.decode()
    response = await client.get("/api/unread", headers={**MACHINE, "Host": evil_host})

    assert response.json() == {"service": MESSAGES}
    messages_host = httpx.URL(services[MESSAGES].url).netloc.decode()
    assert services[MESSAGES].only_request().header("host") == [messages_host]
    assert not evil.received


async def test_routes_of_a_service_without_a_url_are_absent(sparse_bff_url: str) -> None:
    async with httpx.AsyncClient(base_url=sparse_bff_url, trust_env=False) as sparse:
        for path in (f"/api/users/{USER_ID}", "/api/users", "/api/identity_service/openapi.json"):
            response = await sparse.get(path, headers=MACHINE)
            assert response.status_code == 404, path


async def test_websocket_to_the_api_is_refused(bff_url: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(bff_url.replace("http", "ws", 1) + "/api/unread"):
            pass
    assert refused.value.response.status_code == 403


async def test_requests_are_counted_by_route_template(
    client: httpx.AsyncClient, bff_app: Starlette
) -> None:
    await client.get(f"/api/conversations/{CONVERSATION_ID}", headers=MACHINE)
    await client.put(f"/api/conversations/{CONVERSATION_ID}", headers=MACHINE)
    metrics = bff_app.state.metrics

    def counted(method: str, status: str) -> bool:
        labels = {"method": method, "route": "/api/conversations/{id}", "status": status}
        return bool(metrics.registry.get_sample_value("parley_http_requests_total", labels))

    await eventually(lambda: counted("GET", "200") and counted("PUT", "405"))
    assert CONVERSATION_ID not in metrics.exposition().decode()


# --- authentication, CSRF and cookies -------------------------------------------------------


async def test_browser_call_carries_the_session_token_instead_of_the_cookie(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    message = {"body": "hello", "client_msg_id": "c-1"}
    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    response = await client.post(path, headers=BROWSER, json=message)

    assert response.status_code == 200
    received = services[MESSAGES].only_request()
    assert received.header("authorization") == [f"Bearer {SESSION_ACCESS_TOKEN}"]
    assert received.header("cookie") == []
    assert received.header("x-csrf") == []
    assert json.loads(received.body) == message


@pytest.mark.parametrize(
    "csrf_headers",
    [[], [("X-CSRF", "0")], [("X-CSRF", "true")], [("X-CSRF", "1, 1")], [("X-CSRF", "1")] * 2],
    ids=["missing", "0", "true", "1, 1", "twice"],
)
async def test_browser_call_without_csrf_header_is_refused_before_any_service(
    csrf_headers: list[tuple[str, str]],
    client: httpx.AsyncClient,
    services: dict[str, EchoService],
) -> None:
    headers = [("Cookie", f"session={LIVE_SESSION}"), *csrf_headers]
    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    response = await client.post(path, headers=headers, json={"body": "forged"})

    assert response.status_code == 403
    assert problem_code(response) == "csrf_required"
    assert nothing_reached(services)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/x-www-form-urlencoded", b"body=forged"), (None, b"")],
    ids=["form post", "body-less post"],
)
async def test_cross_site_simple_post_is_refused(
    content_type: str | None,
    body: bytes,
    client: httpx.AsyncClient,
    services: dict[str, EchoService],
) -> None:
    headers = {"Cookie": f"session={LIVE_SESSION}", "Origin": "https://evil.example"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    path = f"/api/invitations/{CONVERSATION_ID}/accept"
    response = await client.post(path, headers=headers, content=body)

    assert response.status_code == 403
    assert nothing_reached(services)


async def test_browser_call_without_a_live_session_is_401_before_any_service(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.get("/api/unread", headers={"X-CSRF": "1", "Cookie": "session=gone"})

    assert response.status_code == 401
    assert problem_code(response) == "session_required"
    assert nothing_reached(services)


async def test_machine_call_passes_its_token_through_unchanged_without_csrf(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    authorization = "Bearer eyJ0.abc-DEF_ghi~jkl+/mno=="
    headers = {"Authorization": authorization, "Cookie": f"session={LIVE_SESSION}"}
    response = await client.get("/api/unread", headers=headers)

    assert response.status_code == 200
    received = services[MESSAGES].only_request()
    assert received.header("authorization") == [authorization]
    assert received.header("cookie") == []


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two tokens", "Bearer a=b"]
)
async def test_authorization_other_than_one_bearer_token_is_401(
    authorization: str, client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    headers = {**BROWSER, "Authorization": authorization}
    response = await client.get("/api/unread", headers=headers)

    assert response.status_code == 401
    assert problem_code(response) == "invalid_authorization"
    assert response.headers["www-authenticate"] == "Bearer"
    assert nothing_reached(services)


@pytest.mark.parametrize("caller", [BROWSER, MACHINE], ids=["browser", "machine"])
async def test_cookies_never_pass_the_proxy_in_either_direction(
    caller: dict[str, str], client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    async with httpx.AsyncClient(trust_env=False) as direct_client:
        direct = await direct_client.get(f"{services[MESSAGES].url}/api/unread")
    assert "set-cookie" in direct.headers  # the service does try to set one
    services[MESSAGES].reset()

    # Twice: a cookie jar in the proxy would send the first answer's cookie with the second call.
    for _ in range(2):
        headers = {**caller, "Cookie": f"session={LIVE_SESSION}; theme=dark"}
        response = await client.get("/api/unread", headers=headers)
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
    assert [r.header("cookie") for r in services[MESSAGES].received] == [[], []]


# --- header hygiene -------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_dropped_both_ways(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    hop_by_hop = {
        "Connection": "keep-alive, X-Client-Hop",
        "X-Client-Hop": "proxy only",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "example/1",
        "Proxy-Authorization": "Basic eDp5",
        "Proxy-Connection": "keep-alive",
    }
    response = await client.get(
        "/api/unread", headers={**MACHINE, **hop_by_hop, "X-End-To-End": "kept"}
    )

    received = services[MESSAGES].only_request()
    for name in hop_by_hop:
        assert received.header(name.lower()) == [], name
    assert received.header("x-end-to-end") == ["kept"]
    for name in ("x-upstream-hop", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers, name
    assert "x-upstream-hop" not in response.headers.get("connection", "")
    assert response.headers["x-served-by"] == MESSAGES


async def test_proxy_adds_no_headers_but_its_own(
    bff_url: str, services: dict[str, EchoService]
) -> None:
    """httpx's defaults (User-Agent, Accept-Encoding …) must not be added on the client's behalf."""
    status, _ = await send_raw(bff_url, "/api/unread")

    assert status == 200
    names = {name for name, _ in services[MESSAGES].only_request().headers}
    assert names == {
        "host",
        "authorization",
        "x-forwarded-proto",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-request-id",
    }


async def test_forwarding_headers_are_set_afresh(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    spoofed = {
        "X-Forwarded-For": "203.0.113.66",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/admin",
        "Forwarded": "for=203.0.113.66;host=evil.example",
        "X-Real-IP": "203.0.113.66",
        "X-HTTP-Method-Override": "DELETE",
        "X-Original-URL": "/api/admin",
    }
    await client.get("/api/unread", headers={**MACHINE, **spoofed, "Host": "chat.example"})

    received = services[MESSAGES].only_request()
    assert received.header("x-forwarded-for") == ["127.0.0.1"]
    assert received.header("x-forwarded-proto") == ["http"]
    assert received.header("x-forwarded-host") == ["chat.example"]
    for name in ("x-forwarded-prefix", "forwarded", "x-real-ip"):
        assert received.header(name) == [], name
    assert received.header("x-http-method-override") == []
    assert received.header("x-original-url") == []


async def test_request_id_travels_to_the_service_and_comes_back_once(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.get("/api/unread", headers={**MACHINE, "X-Request-ID": "trace-4711"})

    assert services[MESSAGES].only_request().header("x-request-id") == ["trace-4711"]
    assert response.headers.get_list("x-request-id") == ["trace-4711"]


@pytest.mark.parametrize(
    "headers",
    [{"X-Big": "a" * 20_000}, {f"X-Many-{n}": "1" for n in range(100)}],
    ids=["one huge", "too many"],
)
async def test_oversized_request_headers_are_431_and_reach_nothing(
    headers: dict[str, str], client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.get("/api/unread", headers={**MACHINE, **headers})

    assert response.status_code == 431
    assert problem_code(response) == "request_headers_too_large"
    assert nothing_reached(services)


async def test_overlong_target_is_414_and_reaches_nothing(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.get("/api/search", params={"q": "a" * 9000}, headers=MACHINE)

    assert response.status_code == 414
    assert nothing_reached(services)


# --- request bodies -------------------------------------------------------------------------


async def test_request_body_streams_through_before_it_has_all_arrived(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    messages = services[MESSAGES]

    async def body() -> AsyncIterator[bytes]:
        yield b'{"body": "'
        # Set only once the service holds the first part: a buffering proxy would hang here.
        await asyncio.wait_for(messages.body_arriving.wait(), timeout=5)
        yield b'streamed"}'

    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    response = await client.post(path, headers={**MACHINE, **JSON}, content=body())

    assert response.status_code == 200
    assert messages.only_request().body == b'{"body": "streamed"}'


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_at_the_limit_is_forwarded_whole(
    chunked: bool, client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    payload = b"x" * MAX_BODY_BYTES

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    content = chunks() if chunked else payload
    response = await client.post(path, headers={**MACHINE, **JSON}, content=content)

    assert response.status_code == 200
    assert services[MESSAGES].only_request().body == payload


async def test_body_declared_over_the_limit_is_413_and_never_sent(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    content = b"x" * (MAX_BODY_BYTES + 1)
    response = await client.post(path, headers={**MACHINE, **JSON}, content=content)

    assert response.status_code == 413
    assert problem_code(response) == "payload_too_large"
    assert nothing_reached(services)


async def test_chunked_body_over_the_limit_is_413_and_never_complete_upstream(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    async def oversized() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 8192 + 2):
            yield b"x" * 8192

    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    response = await client.post(path, headers={**MACHINE, **JSON}, content=oversized())

    assert response.status_code == 413
    assert problem_code(response) == "payload_too_large"
    messages = services[MESSAGES]
    # The body was on its way (streamed), and the service saw the connection break mid-body.
    await eventually(lambda: messages.broken_requests == 1)
    assert messages.received == []


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-patch+json",
    ],
)
async def test_body_that_is_not_json_is_415_and_reaches_nothing(
    content_type: str | None, client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    headers = dict(MACHINE)
    if content_type is not None:
        headers["Content-Type"] = content_type
    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    response = await client.post(path, headers=headers, content=b'{"body": "hi"}')

    assert response.status_code == 415
    assert problem_code(response) == "unsupported_media_type"
    assert nothing_reached(services)


async def test_json_with_a_charset_is_accepted(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    headers = {**MACHINE, "Content-Type": "Application/JSON; charset=utf-8"}
    path = f"/api/conversations/{CONVERSATION_ID}/messages"
    response = await client.post(path, headers=headers, content=b'{"body": "hi"}')

    assert response.status_code == 200
    assert services[MESSAGES].only_request().header("content-type") == [headers["Content-Type"]]


async def test_body_on_a_get_is_refused(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.request(
        "GET", "/api/unread", headers={**MACHINE, **JSON}, content=b"{}"
    )

    assert response.status_code == 400
    assert problem_code(response) == "body_not_allowed"
    assert nothing_reached(services)


# --- responses and failures -----------------------------------------------------------------


async def test_large_response_streams_through_while_the_service_is_still_sending(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    size = 6 * 1024 * 1024
    url = f"/api/unread?respond_bytes={size}&hold=1"
    async with client.stream("GET", url, headers=MACHINE) as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        # The service sends the rest only once released: a buffering proxy would hang here.
        first = await asyncio.wait_for(anext(chunks), timeout=5)
        services[MESSAGES].release.set()
        rest = b"".join([chunk async for chunk in chunks])

    assert first + rest == streamed_payload(size)


async def test_response_growing_past_the_limit_is_cut_off(client: httpx.AsyncClient) -> None:
    url = f"/api/unread?respond_bytes={MAX_RESPONSE_BYTES + CHUNK_BYTES}"
    forwarded = 0

    async def read_whole_response() -> None:
        nonlocal forwarded
        async with client.stream("GET", url, headers=MACHINE) as response:
            async for chunk in response.aiter_raw():
                forwarded += len(chunk)

    with pytest.raises(httpx.RemoteProtocolError):
        await read_whole_response()

    assert 0 < forwarded <= MAX_RESPONSE_BYTES


async def test_response_declared_past_the_limit_is_502(client: httpx.AsyncClient) -> None:
    url = f"/api/unread?respond_bytes={MAX_RESPONSE_BYTES + 1}&declare_length=1"
    response = await client.get(url, headers=MACHINE)

    assert response.status_code == 502
    assert problem_code(response) == "upstream_response_too_large"


async def test_unreachable_service_is_503_with_retry_after(sparse_bff_url: str) -> None:
    async with httpx.AsyncClient(base_url=sparse_bff_url, trust_env=False) as sparse:
        response = await sparse.get("/api/conversations", headers=MACHINE)

    assert response.status_code == 503
    assert problem_code(response) == "upstream_unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def test_service_that_does_not_answer_in_time_is_503_with_retry_after(
    client: httpx.AsyncClient, services: dict[str, EchoService]
) -> None:
    response = await client.get(f"/api/unread?delay_secs={READ_TIMEOUT * 3}", headers=MACHINE)

    assert response.status_code == 503
    assert problem_code(response) == "upstream_unavailable"
    assert int(response.headers["retry-after"]) >= 1
