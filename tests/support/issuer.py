"""A small, real OpenID issuer for tests, served over HTTP, that can be told to misbehave.

It publishes discovery and a JWKS (RSA, EC and Ed25519 keys that tests add, rotate and remove),
issues client-credentials tokens at its token endpoint, mints any token a test asks for —
including malformed and malicious ones — and counts every request it receives by path.

    async with running_issuer() as issuer:
        token = issuer.access_token(sub="alice")
        assert issuer.jwks_fetches == 0
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from joserfc import jws
from joserfc.jwk import ECKey, Key, KeyParameters, OKPKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.servers import free_port, serve_in_loop

KeyType = Literal["RSA", "EC", "OKP"]
_ALGORITHM_FOR_KEY_TYPE = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}
_SIGNING_REGISTRY = jws.JWSRegistry(
    algorithms=["RS256", "RS384", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"],
    strict_check_header=False,
)
DEFAULT_AUDIENCE = "parley-api"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    """A JWS compact serialization with whatever header, claims and signature bytes."""
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(claims).encode()),
            b64url(signature),
        ]
    )


def generate_key(key_type: KeyType, kid: str | None = None) -> Key:
    """A fresh private key of ``key_type`` with ``kid`` (random when not given)."""
    parameters: KeyParameters = {"kid": kid or uuid.uuid4().hex, "use": "sig"}
    if key_type == "RSA":
        return RSAKey.generate_key(2048, parameters)
    if key_type == "EC":
        return ECKey.generate_key("P-256", parameters)
    return OKPKey.generate_key("Ed25519", parameters)


class ManualClock:
    """A monotonic clock that only moves when a test advances it (for cache and throttle timing)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ClientRegistration:
    secret: str
    scopes: frozenset[str]


@dataclass
class TokenRequest:
    """What one call to the token endpoint carried."""

    form: dict[str, str]
    authorization: str | None


@dataclass
class TokenEndpointBehaviour:
    """How the token endpoint answers; tests change it to make the issuer misbehave."""

    lifetime_seconds: int = 300
    delay_seconds: float = 0.0
    failure_status: int | None = None
    failure_headers: dict[str, str] = field(default_factory=dict)


class LocalIssuer:
    """An OpenID issuer at ``url`` whose keys, clients and answers tests control."""

    def __init__(
        self, url: str, audience: str = DEFAULT_AUDIENCE, key_type: KeyType = "EC"
    ) -> None:
        self.url = url
        self.audience = audience
        self.requests: Counter[str] = Counter()  # by path, every HTTP request received
        self.token_requests: list[TokenRequest] = []
        self.token_endpoint = TokenEndpointBehaviour()
        self.advertised_issuer = url  # what discovery claims; change it to misbehave
        self.jwks_failure_status: int | None = None
        self.clients: dict[str, ClientRegistration] = {}
        self.keys: dict[str, Key] = {}  # private keys by kid, published or not
        self.published: list[str] = []  # kids in the JWKS, in order
        # EC by default because a P-256 key takes a millisecond to make and RSA-2048 up to a second.
        self.signing_kid = self.add_key(key_type)
        self._router = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The issuer is an ASGI app: count the request, then route it."""
        if scope["type"] == "http":
            self.requests[scope["path"]] += 1
        await self._router(scope, receive, send)

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/jwks"

    @property
    def jwks_fetches(self) -> int:
        return self.requests["/jwks"]

    @property
    def discovery_fetches(self) -> int:
        return self.requests["/.well-known/openid-configuration"]

    # Keys -----------------------------------------------------------------------------------

    def add_key(
        self, key_type: KeyType = "EC", *, kid: str | None = None, publish: bool = True
    ) -> str:
        """Create a signing key; publish it in the JWKS unless told not to. Returns its kid."""
        key = generate_key(key_type, kid)
        assert key.kid is not None
        self.keys[key.kid] = key
        if publish:
            self.published.append(key.kid)
        return key.kid

    def rotate_key(self, key_type: KeyType = "EC") -> str:
        """Publish a new key and sign with it from now on; the old key stays published."""
        self.signing_kid = self.add_key(key_type)
        return self.signing_kid

    def unpublish_key(self, kid: str) -> None:
        self.published.remove(kid)

    def public_jwk(self, kid: str) -> dict[str, Any]:
        return dict(self.keys[kid].as_dict(private=False))

    # Minting --------------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims of a valid user access token for ``audience``; an override of None removes."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": str(uuid.uuid4()),
            "client_id": "parley-bff",
            "azp": "parley-bff",
            "scope": "openid profile email",
            "sid": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        kid: str | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """``claims`` signed with key ``kid`` (the current signing key by default).

        ``header`` entries are added to the protected header; an entry of None removes one,
        e.g. ``header={"kid": None}`` for a token without a kid.
        """
        key = self.keys[kid or self.signing_kid]
        protected: dict[str, Any] = {
            "alg": _ALGORITHM_FOR_KEY_TYPE[key.key_type],
            "typ": "at+jwt",
            "kid": key.kid,
        }
        protected.update(header or {})
        protected = {name: value for name, value in protected.items() if value is not None}
        payload = json.dumps(claims).encode()
        return jws.serialize_compact(protected, payload, key, registry=_SIGNING_REGISTRY)

    def access_token(
        self, *, kid: str | None = None, header: Mapping[str, Any] | None = None, **claims: Any
    ) -> str:
        """A valid user access token, with claim overrides (None removes a claim)."""
        return self.sign(self.claims(**claims), kid=kid, header=header)

    def machine_token(
        self, client_id: str, scope: str = "chat.read chat.write", **claims: Any
    ) -> str:
        """An access token as the client-credentials grant issues it here: ``sub`` = client id."""
        return self.access_token(
            sub=client_id, client_id=client_id, azp=client_id, scope=scope, sid=None, **claims
        )

    def unsigned_token(self, **claims: Any) -> str:
        """An ``alg=none`` token with valid claims."""
        return compact({"alg": "none", "typ": "at+jwt"}, self.claims(**claims))

    def hmac_token_keyed_with_public_key(self, kid: str | None = None, **claims: Any) -> str:
        """HS256 keyed with a published RSA key's PEM: the classic algorithm-confusion forgery."""
        key = self.keys[kid or self.signing_kid]
        assert isinstance(key, RSAKey), "the forgery needs an RSA key"
        secret = key.as_bytes(encoding="PEM", private=False)
        header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
        unsigned = compact(header, self.claims(**claims)).rsplit(".", 1)[0]
        signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        return f"{unsigned}.{b64url(signature)}"

    # Clients --------------------------------------------------------------------------------

    def register_client(
        self, client_id: str, secret: str, scopes: str = "chat.read chat.write"
    ) -> None:
        self.clients[client_id] = ClientRegistration(secret, frozenset(scopes.split()))

    # HTTP endpoints -------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.advertised_issuer,
                "jwks_uri": self.jwks_uri,
                "token_endpoint": f"{self.url}/token",
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        if self.jwks_failure_status is not None:
            return JSONResponse({"error": "unavailable"}, status_code=self.jwks_failure_status)
        return JSONResponse({"keys": [self.public_jwk(kid) for kid in self.published]})

    async def _token(self, request: Request) -> Response:
        # Parsed by hand: Starlette's request.form() needs python-multipart, which Parley lacks.
        form = dict(parse_qsl((await request.body()).decode()))
        authorization = request.headers.get("Authorization")
        self.token_requests.append(TokenRequest(form, authorization))
        behaviour = self.token_endpoint
        if behaviour.delay_seconds:
            await asyncio.sleep(behaviour.delay_seconds)
        if behaviour.failure_status is not None:
            return JSONResponse(
                {"error": "temporarily_unavailable"},
                status_code=behaviour.failure_status,
                headers=behaviour.failure_headers,
            )
        client_id = self._authenticate_client(authorization)
        if client_id is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if form.get("audience", self.audience) != self.audience:
            return JSONResponse({"error": "invalid_target"}, status_code=400)
        requested = set(form.get("scope", "").split())
        if not requested <= self.clients[client_id].scopes:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        granted = " ".join(sorted(requested or self.clients[client_id].scopes))
        token = self.machine_token(
            client_id, scope=granted, exp=int(time.time()) + behaviour.lifetime_seconds
        )
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": behaviour.lifetime_seconds,
                "scope": granted,
            }
        )

    def _authenticate_client(self, authorization: str | None) -> str | None:
        """client_secret_basic (RFC 6749 §2.3.1: id and secret are form-encoded first)."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            return None
        client_id, _, secret = (unquote(part) for part in decoded.partition(":"))
        registration = self.clients.get(client_id)
        if registration is None or not hmac.compare_digest(registration.secret, secret):
            return None
        return client_id


class IssuerHost:
    """Serves one ``LocalIssuer`` at a time at a fixed URL: tests share the server, not state."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.issuer = LocalIssuer(url)

    def fresh_issuer(
        self, audience: str = DEFAULT_AUDIENCE, key_type: KeyType = "EC"
    ) -> LocalIssuer:
        """Replace the served issuer by a new one with no keys, clients or counts from before."""
        self.issuer = LocalIssuer(self.url, audience, key_type)
        return self.issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.issuer(scope, receive, send)


@contextlib.asynccontextmanager
async def running_issuer_host() -> AsyncIterator[IssuerHost]:
    """An ``IssuerHost`` served over real HTTP on a free loopback port."""
    port = free_port()
    host = IssuerHost(f"http://127.0.0.1:{port}")
    async with serve_in_loop(host, port):
        yield host


@contextlib.asynccontextmanager
async def running_issuer(audience: str = DEFAULT_AUDIENCE) -> AsyncIterator[LocalIssuer]:
    """A ``LocalIssuer`` of its own, served over real HTTP on a free loopback port."""
    async with running_issuer_host() as host:
        yield host.fresh_issuer(audience)
