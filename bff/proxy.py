"""The BFF's ``/api/*`` reverse proxy: allowlisted, authenticated, streamed both ways.

``ApiProxy`` is one ASGI app, mounted at ``/api``. It answers each of these with problem+json
without contacting any service, checking in this order:

    414 uri_too_long                path and query over 8 KiB
    400 invalid_path                not a plain path: dot segments, encoded slashes, backslashes,
                                    empty segments, control characters, absolute-form targets
    431 request_headers_too_large   over 64 header fields, or over 16 KiB of them
    404 not_found                   no route in ``bff.api_routes.API_ROUTES``, or an invalid id
    405 method_not_allowed          the route exists, not with this method (``Allow`` lists them)
    401 invalid_authorization       an ``Authorization`` header that is not one Bearer token
    403 csrf_required               a browser call (no Bearer token) without ``X-CSRF: 1``
    400 / 415 / 413                 a body on GET or DELETE; a body that is not application/json;
                                    a ``Content-Length`` over the body limit
    401 (from access_token_for)     a browser call without a live session

A machine client's ``Authorization: Bearer …`` goes upstream unchanged; a browser call carries the
session's access token instead. Either way the browser's cookies stay in the BFF and the service's
``Set-Cookie`` never reaches the browser. The service is chosen by the route alone, its URL built
from configuration, the checked raw path and the raw query; never from ``Host``. Then:

    413 payload_too_large           a chunked body grew past the limit while streaming
    503 upstream_unavailable        the service cannot be reached or does not answer in time
    502 upstream_response_too_large the service declared a body over the response limit
    the service's answer            its status and end-to-end headers, the body streamed through

A body that outgrows its limit mid-stream, or a client that leaves mid-body, makes the proxy drop
the upstream connection before the body's end, so a service never takes a cut-off body for a
whole one. Likewise a response cut short (the service broke off, or it outgrew the response limit
after it started) ends in a closed connection, never in a response that looks complete.

Why not ``servicekit.http.UpstreamClient``: it reads whole responses into memory, and retries,
while a streamed request body can be sent only once. A retry here is the client's decision, on the
503 and its ``Retry-After``; the proxy itself retries only a failed *connect*, once and at once,
when nothing has been sent. Each service gets one ``httpx.AsyncClient`` with explicit timeouts,
no environment proxies (``trust_env=False``) and no redirects followed. Upstream requests are built
here whole, not with ``build_request``, so the client adds none of its defaults (``User-Agent``,
``Accept-Encoding``) and none of the cookies its jar picks up from answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Final
from urllib.parse import quote

import httpx
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Mount
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.types import Receive, Scope, Send

from bff.api_routes import (
    API_ROUTES,
    CONVERSATIONS,
    IDENTITY,
    MESSAGES,
    REALTIME,
    SERVICES,
    ApiRouteTable,
    split_api_path,
)
from bff.settings import BffSettings
from servicekit.errors import (
    BadGateway,
    BadRequest,
    Forbidden,
    ParleyError,
    PayloadTooLarge,
    RequestHeadersTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamUnavailable,
    UriTooLong,
    problem_response,
)
from servicekit.logging import REQUEST_ID_HEADER, current_request_id

logger = logging.getLogger("bff.proxy")

AccessTokenProvider = Callable[[Request], Awaitable[str]]
"""The session's access token for a browser request; raises ``Unauthorized`` without a session."""

# Bytes; a message is a few KB of JSON, so a megabyte leaves room and still bounds memory.
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
# Bytes; a 200-message page of long messages stays well below this.
DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
# A browser sends about 15 header fields and a few KB of them; nginx allows 4 × 8 KiB.
MAX_REQUEST_HEADERS: Final = 64
MAX_REQUEST_HEADER_BYTES: Final = 16 * 1024
# Bytes of path and query; a search query needs far less, and many proxies stop at 8 KiB.
MAX_TARGET_BYTES: Final = 8 * 1024
# Seconds a client should wait before retrying a call whose service was unreachable.
UPSTREAM_RETRY_AFTER_SECONDS: Final = 2
# Seconds. ``read`` is the longest silence between two chunks of an answer, not a total.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=2.0, read=30.0, write=10.0, pool=5.0)
# Per service and BFF process; beyond it a request waits up to the pool timeout, then gets 503.
CONNECTION_LIMITS: Final = httpx.Limits(max_connections=200, max_keepalive_connections=50)

BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
# RFC 9110 §7.6.1, plus the de-facto Keep-Alive and Proxy-Connection.
HOP_BY_HOP_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding"}
    | {b"upgrade", b"proxy-authenticate", b"proxy-authorization"}
)
# Never passed on upstream: the BFF's own (cookies, CSRF), set afresh by the proxy (the rest),
# or able to make a service or framework misread the client or the method.
_REQUEST_HEADERS_WITHHELD: Final = frozenset(
    {b"cookie", b"x-csrf", b"host", b"authorization", b"content-length", b"expect", b"forwarded"}
    | {b"x-request-id", b"x-real-ip", b"x-http-method-override", b"x-http-method"}
    | {b"x-method-override", b"x-original-url", b"x-rewrite-url"}
)
# Never passed back: cookies are the BFF's alone; the BFF's server sets its own Date, Server
# and X-Request-ID (the same id the service got).
_RESPONSE_HEADERS_WITHHELD: Final = frozenset(
    {b"set-cookie", b"set-cookie2", b"date", b"server", b"x-request-id"}
)
_WITHHELD_PREFIXES: Final = (b"proxy-", b"x-forwarded-")

# RFC 6750 §2.1: one token68 after the scheme.
_BEARER: Final = re.compile(r"Bearer [A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
_DIGITS: Final = re.compile(r"[0-9]{1,18}")
# A Host value worth repeating in X-Forwarded-Host: a name or an IP literal, and a port.
_HOST: Final = re.compile(r"(?:[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


class ResponseAborted(Exception):
    """A response already under way cannot be finished; raised so the server closes the
    connection instead of ending the response as if it were complete."""


def upstream_urls(settings: BffSettings) -> dict[str, str]:
    """Each service's base URL from the settings; "" (no routes) for one that is not deployed."""
    return {
        IDENTITY: settings.identity_url,
        CONVERSATIONS: settings.conversations_url,
        MESSAGES: settings.messages_url,
        REALTIME: settings.realtime_url,
    }


class ApiProxy:
    """The allowlisted, streaming ``/api/*`` proxy; ``routes()`` mounts it, ``aclose()`` ends it.

    ``upstreams`` maps service names (``bff.api_routes.SERVICES``) to base URLs; a service with
    an empty URL has no routes, so its paths are 404. ``transport`` replaces the network (tests).
    """

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        access_token_for: AccessTokenProvider,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        unknown = set(upstreams) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {sorted(unknown)}; known: {list(SERVICES)}")
        self._base_urls = {
            name: _base_url(name, url) for name, url in upstreams.items() if url.strip()
        }
        self.route_table = ApiRouteTable(
            route for route in API_ROUTES if route.upstream in self._base_urls
        )
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self._access_token_for = access_token_for
        self._timeout = timeout
        # retries=1: one immediate new attempt when a connect fails, before a byte was sent.
        self._clients = {
            name: httpx.AsyncClient(
                transport=transport
                or httpx.AsyncHTTPTransport(retries=1, limits=CONNECTION_LIMITS),
                timeout=timeout,
                trust_env=False,
            )
            for name in self._base_urls
        }

    def routes(self) -> list[BaseRoute]:
        """The routes to list in the app; a BFF route of its own under /api/ must come first."""
        return [Mount("/api", app=self, name="api")]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # The API is plain HTTP; the browser's one WebSocket is /realtime.
            await send({"type": "websocket.close", "code": WS_1008_POLICY_VIOLATION})
            return
        try:
            upstream, upstream_request = await self._upstream_request(Request(scope), receive)
            upstream_response = await self._send(upstream, upstream_request)
        except ParleyError as error:
            await problem_response(error, scope["path"])(scope, receive, send)
            return
        except ClientDisconnect:
            return  # the client left mid-body: nobody to answer, and the service saw a broken call
        try:
            response = StreamingResponse(
                self._response_body(upstream, upstream_response),
                status_code=upstream_response.status_code,
            )
            response.raw_headers = _end_to_end_headers(
                upstream_response.headers.raw, _RESPONSE_HEADERS_WITHHELD
            )
            await response(scope, receive, send)
        finally:
            await upstream_response.aclose()

    async def _upstream_request(
        self, request: Request, receive: Receive
    ) -> tuple[str, httpx.Request]:
        """The service and the request to send it, once every check has passed.

        ``request`` has no receive channel: ``access_token_for`` cannot consume the body.
        """
        scope = request.scope
        raw_path = _raw_path(scope)
        query: bytes = scope["query_string"]
        if len(raw_path) + len(query) > MAX_TARGET_BYTES:
            raise UriTooLong(f"The path and query exceed {MAX_TARGET_BYTES} bytes.")
        segments = split_api_path(raw_path)
        _check_header_size(scope["headers"])
        route = self.route_table.match(segments)
        scope["route"] = route  # requests are counted by route template
        route.require_method(scope["method"])

        authorization = _bearer_authorization(request.headers)
        if authorization is None and request.headers.getlist("x-csrf") != ["1"]:
            raise Forbidden("A browser call needs the header X-CSRF: 1.", code="csrf_required")
        body_length = self._declared_body_length(request.headers, scope["method"])
        if authorization is None:
            authorization = f"Bearer {await self._access_token_for(request)}"

        headers = _end_to_end_headers(scope["headers"], _REQUEST_HEADERS_WITHHELD)
        headers.append((b"authorization", authorization.encode("ascii")))
        if body_length:
            headers.append((b"content-length", str(body_length).encode("ascii")))
        headers.extend(_forwarding_headers(scope, request.headers))
        base_url = self._base_urls[route.upstream]
        target = base_url.raw_path.rstrip(b"/") + raw_path.encode("ascii")
        upstream_request = httpx.Request(
            scope["method"],
            base_url.copy_with(raw_path=target + b"?" + query if query else target),
            headers=headers,
            content=None if body_length == 0 else self._request_body(receive),
            extensions={"timeout": self._timeout.as_dict()},
        )
        return route.upstream, upstream_request

    def _declared_body_length(self, headers: Headers, method: str) -> int | None:
        """0 without a body, else its ``Content-Length``, or None for a chunked body."""
        lengths = headers.getlist("content-length")
        chunked = "transfer-encoding" in headers
        if len(lengths) > 1 or (lengths and (chunked or not _DIGITS.fullmatch(lengths[0]))):
            raise BadRequest("Conflicting or malformed Content-Length.", code="bad_content_length")
        length = int(lengths[0]) if lengths else None if chunked else 0
        if length == 0:
            return 0
        if method not in BODY_METHODS:
            raise BadRequest(f"A {method} request has no body.", code="body_not_allowed")
        content_types = headers.getlist("content-type")
        if len(content_types) != 1 or _media_type(content_types[0]) != "application/json":
            raise UnsupportedMediaType("A request body must be application/json.")
        if length is not None and length > self.max_body_bytes:
            raise self._body_too_large()
        return length

    def _body_too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"A request body may have at most {self.max_body_bytes} bytes.")

    async def _request_body(self, receive: Receive) -> AsyncIterator[bytes]:
        """The client's body as it arrives; raising here drops the upstream connection mid-body."""
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                raise self._body_too_large()
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _send(self, upstream: str, request: httpx.Request) -> httpx.Response:
        """The service's answer, its body not yet read."""
        try:
            response = await self._clients[upstream].send(request, stream=True)
        except httpx.TransportError as error:
            logger.warning(
                "service unreachable", extra={"upstream": upstream, "failure": repr(error)}
            )
            raise UpstreamUnavailable(
                f"{upstream} is unavailable.", retry_after=UPSTREAM_RETRY_AFTER_SECONDS
            ) from error
        declared = response.headers.get("content-length", "")
        if _DIGITS.fullmatch(declared) and int(declared) > self.max_response_bytes:
            await response.aclose()
            raise BadGateway(
                f"{upstream} answered with {declared} bytes; at most "
                f"{self.max_response_bytes} are forwarded.",
                code="upstream_response_too_large",
            )
        return response

    async def _response_body(self, upstream: str, response: httpx.Response) -> AsyncIterator[bytes]:
        """The service's body as it arrives, bytes untouched, cut off past the response limit."""
        forwarded = 0
        try:
            async for chunk in response.aiter_raw():
                forwarded += len(chunk)
                if forwarded > self.max_response_bytes:
                    raise ResponseAborted(
                        f"{upstream} sent more than {self.max_response_bytes} bytes"
                    )
                yield chunk
        except httpx.TransportError as error:
            raise ResponseAborted(f"{upstream} broke off its answer: {error!r}") from error


def _base_url(name: str, url: str) -> httpx.URL:
    base_url = httpx.URL(url)
    if base_url.scheme not in ("http", "https") or not base_url.host or base_url.query:
        raise ValueError(f"{name}: {url!r} is not an http(s) base URL")
    return base_url


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it, still percent-encoded, without the app's root path."""
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is None:  # the server gave only the decoded path (ASGI allows it)
        raw_path = quote(scope["path"], safe="/").encode("ascii")
    app_root = scope.get("app_root_path", "").encode("latin-1")
    if app_root and raw_path.startswith(app_root):
        raw_path = raw_path[len(app_root) :]
    # Latin-1 maps bytes one to one, so split_api_path sees (and rejects) any non-ASCII byte.
    return raw_path.decode("latin-1")


def _check_header_size(headers: list[tuple[bytes, bytes]]) -> None:
    size = sum(len(name) + len(value) for name, value in headers)
    if len(headers) > MAX_REQUEST_HEADERS or size > MAX_REQUEST_HEADER_BYTES:
        raise RequestHeadersTooLarge(
            f"At most {MAX_REQUEST_HEADERS} header fields of {MAX_REQUEST_HEADER_BYTES} bytes "
            "in all are accepted."
        )


def _bearer_authorization(headers: Headers) -> str | None:
    """A machine client's ``Authorization``, or None for a browser call (no such header)."""
    values = headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1 or not _BEARER.fullmatch(values[0]):
        raise Unauthorized(
            "Authorization must be a single Bearer token.",
            code="invalid_authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return values[0]


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _forwarding_headers(scope: Scope, headers: Headers) -> list[tuple[bytes, bytes]]:
    """Fresh ``X-Forwarded-*`` and ``X-Request-ID``; whatever the client sent was withheld."""
    forwarding = [(b"x-forwarded-proto", scope["scheme"].encode("ascii"))]
    client = scope.get("client")
    if client:
        forwarding.append((b"x-forwarded-for", client[0].encode("ascii")))
    host = headers.get("host", "")
    if _HOST.fullmatch(host):
        forwarding.append((b"x-forwarded-host", host.encode("ascii")))
    request_id = current_request_id()
    if request_id is not None:
        forwarding.append((REQUEST_ID_HEADER.lower().encode("ascii"), request_id.encode("ascii")))
    return forwarding


def _end_to_end_headers(
    headers: Iterable[tuple[bytes, bytes]], withheld: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """``headers`` (names lower-cased) without hop-by-hop ones, those that ``Connection`` names,
    proxy and forwarding ones, and ``withheld``."""
    headers = [(name.lower(), value) for name, value in headers]
    named_by_connection = {
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP_HEADERS
        and name not in named_by_connection
        and name not in withheld
        and not name.startswith(_WITHHELD_PREFIXES)
    ]
