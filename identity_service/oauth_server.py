"""authlib's authorization server, run from Starlette.

authlib's server components are synchronous: a grant calls ``query_client``,
``query_authorization_code``, ``save_token`` … and expects answers, while Parley's stores are
async. So each OAuth request runs in a worker thread (``run_oauth``), and the hooks it calls hop
back onto the event loop for storage (``run_on_loop``, i.e. ``anyio.from_thread.run``). The
event loop never blocks; a worker thread blocks only on its own request's I/O.

Requests reach authlib as ``ProviderRequest``: parameters already read (bounded in size) and
checked to be single-valued and free of characters authlib cannot echo in an error description.
Answers come back as ``OAuthResponse`` and become Starlette responses on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl

import anyio
import anyio.from_thread
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Payload
from authlib.oauth2.rfc6749 import OAuth2Request as AuthlibRequest
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from identity_service.clients import Client
from identity_service.provider import Provider

T = TypeVar("T")

MAX_FORM_BYTES: Final = 16 * 1024  # a token request is a few hundred bytes
MAX_FORM_FIELDS: Final = 30
# Parameters RFC 8707 lets a client repeat; any other repeated parameter is refused (RFC 6749
# §3.1 and §3.2).
_REPEATABLE: Final = frozenset({"resource"})
# Parameters authlib may quote in an error description, which RFC 6749 §5.2 limits to
# printable ASCII without '"' and '\'; authlib raises (a 500) rather than escape them.
_ECHOED: Final = ("response_type", "redirect_uri", "client_id", "grant_type", "scope")
_ECHO_SAFE: Final = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")


def run_on_loop(function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From an OAuth worker thread: run ``function(*args)`` on the event loop, return its result."""
    return anyio.from_thread.run(function, *args)


async def run_oauth(function: Callable[..., T], *args: Any) -> T:
    """From the event loop: run synchronous authlib code in a worker thread."""
    return await anyio.to_thread.run_sync(function, *args)


class _Payload(OAuth2Payload):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, parameters: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in parameters:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class ProviderRequest(AuthlibRequest):  # type: ignore[misc]
    """An HTTP request as authlib's grants and endpoints read it."""

    def __init__(
        self, method: str, uri: str, headers: Headers, parameters: Sequence[tuple[str, str]]
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(parameters)
        self._parameters = dict(self.payload.data)

    @property
    def args(self) -> dict[str, str]:
        return self._parameters

    @property
    def form(self) -> dict[str, str]:
        return self._parameters


def check_parameters(parameters: Sequence[tuple[str, str]]) -> None:
    """Refuse repeated parameters and characters authlib cannot put in an error description."""
    seen: set[str] = set()
    for name, value in parameters:
        if name in seen and name not in _REPEATABLE:
            raise InvalidRequestError(f"The '{name}' parameter is repeated.")
        seen.add(name)
        if name in _ECHOED and not _ECHO_SAFE.fullmatch(value):
            raise InvalidRequestError(f"The '{name}' parameter has characters it cannot have.")


def check_basic_credentials(headers: Headers) -> None:
    """Refuse HTTP Basic credentials that are not UTF-8 text (authlib would raise a 500)."""
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return
    try:
        base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise InvalidClientError(
            status_code=401, description="The Basic credentials are malformed."
        ) from error


async def read_form(request: Request) -> list[tuple[str, str]]:
    """The request's ``application/x-www-form-urlencoded`` body, up to ``MAX_FORM_BYTES``."""
    content_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise InvalidRequestError("The request body is too large.")
    except ClientDisconnect as error:
        raise InvalidRequestError("The request body was not received.") from error
    try:
        text = body.decode()
        return parse_qsl(text, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRequestError("The request body is not a valid form.") from error


async def request_parameters(request: Request) -> list[tuple[str, str]]:
    """An endpoint's parameters: the query of a GET, the form of a POST."""
    if request.method == "GET":
        return list(request.query_params.multi_items())
    return await read_form(request)


def provider_request(
    request: Request, issuer: str, parameters: Sequence[tuple[str, str]]
) -> ProviderRequest:
    """``request`` for authlib, at its public URL under ``issuer`` (a TLS-terminating proxy
    may have forwarded it over plain HTTP)."""
    check_parameters(parameters)
    query = request.url.query
    uri = issuer + request.url.path + ("?" + query if query else "")
    return ProviderRequest(request.method, uri, request.headers, parameters)


@dataclass
class OAuthResponse:
    """What authlib answered: a status, a JSON object or text, and headers."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return next((value for name, value in self.headers if name.lower() == "location"), None)

    def to_response(self) -> Response:
        headers = dict(self.headers)
        if isinstance(self.body, dict):
            headers.pop("Content-Type", None)
            return JSONResponse(self.body, status_code=self.status, headers=headers)
        return Response(self.body, status_code=self.status, headers=headers)


def error_response(error: OAuth2Error) -> OAuthResponse:
    """An OAuth error as RFC 6749 §5.2 JSON (or a redirect, when it carries a redirect_uri)."""
    status, body, headers = error()
    return OAuthResponse(status, body, list(headers))


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's authorization server over the provider's stores, with requests and responses
    in the shapes above. Grants reach the stores through ``server.provider``."""

    def __init__(self, provider: Provider) -> None:
        super().__init__()
        self.provider = provider

    def query_client(self, client_id: str) -> Client | None:
        return run_on_loop(self.provider.clients.get_active_client, client_id)

    def save_token(self, token: dict[str, Any], request: ProviderRequest) -> None:
        """Nothing to store: access tokens are self-contained JWTs. Grants that issue refresh
        tokens store them in their own ``save_token``."""

    def create_oauth2_request(self, request: ProviderRequest) -> ProviderRequest:
        return request

    def create_json_request(self, request: ProviderRequest) -> ProviderRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any] | str, headers: list[tuple[str, str]]
    ) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signals are for framework integrations to relay; Parley needs none."""
