"""An OpenID Provider for the BFF's tests that signs anyone in at once and misbehaves on demand.

Built on ``tests.support.issuer.LocalIssuer`` (discovery, JWKS, key rotation, token minting), it
adds what a relying party talks to: an authorization endpoint that approves immediately (as
``next_user``), a token endpoint for the authorization-code (PKCE S256 checked) and refresh-token
grants (refresh tokens rotate at every use; an old one is refused), userinfo, revocation and an
end-session endpoint. Tests set its attributes to make it misbehave: ``id_token_claims`` and
``id_token_header`` alter the next ID tokens, ``id_token_forgery`` forges them, ``authorize_error``
answers the next sign-in with an error, ``refresh_error`` refuses refreshes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.issuer import (
    DEFAULT_AUDIENCE,
    KeyType,
    LocalIssuer,
    TokenEndpointBehaviour,
    TokenRequest,
    b64url,
    compact,
)

CLIENT_ID = "parley-bff"
CLIENT_SECRET = "bff-test-secret"
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
Forgery = Literal["bad_signature", "hs256_public_key", "alg_none"]


@dataclass
class Grant:
    """What one sign-in at the provider granted: the user, their provider session and nonce."""

    user: dict[str, Any]
    sid: str
    nonce: str
    code_challenge: str
    redirect_uri: str


@dataclass
class Behaviour:
    id_token_claims: dict[str, Any] = field(default_factory=dict)  # None values remove claims
    id_token_header: dict[str, Any] = field(default_factory=dict)
    id_token_forgery: Forgery | None = None
    userinfo_claims: dict[str, Any] = field(default_factory=dict)
    authorize_error: str | None = None
    refresh_error: str | None = None  # e.g. "invalid_grant"
    refresh_delay_seconds: float = 0.0
    access_token_lifetime_seconds: int = 300
    issue_refresh_tokens: bool = True


class ScriptedProvider(LocalIssuer):
    def __init__(self, url: str, audience: str = DEFAULT_AUDIENCE, key_type: KeyType = "EC"):
        super().__init__(url, audience, key_type)
        self.register_client(CLIENT_ID, CLIENT_SECRET)
        self.users: dict[str, dict[str, Any]] = {}  # by sub, everyone who signed in
        self.codes: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}  # only the latest of each chain is valid
        self.default_signing_kid = self.signing_kid
        self.end_session_supported = True  # read by a BFF once, at its first discovery
        self.behaviour = Behaviour()
        self.next_user: dict[str, Any] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.refreshes = 0
        self.revoked: list[str] = []
        self.end_session_requests: list[dict[str, str]] = []
        self.reset()
        self._router.routes.extend(
            [
                Route("/authorize", self._authorize),
                Route("/userinfo", self._userinfo),
                Route("/revoke", self._revoke, methods=["POST"]),
                Route("/end-session", self._end_session),
            ]
        )

    def reset(self) -> None:
        """Behave well again, sign in someone new next, and count from zero (keys are kept)."""
        self.behaviour = Behaviour()
        self.signing_kid = self.default_signing_kid
        self.token_endpoint = TokenEndpointBehaviour()
        self.next_user = new_user()
        self.authorize_requests = []
        self.token_requests.clear()
        self.refreshes = 0  # refresh-token grants answered successfully
        self.revoked = []
        self.end_session_requests = []

    # Discovery ------------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.advertised_issuer,
                "jwks_uri": self.jwks_uri,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "revocation_endpoint": f"{self.url}/revoke",
                "end_session_endpoint": f"{self.url}/end-session"
                if self.end_session_supported
                else None,
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
                "backchannel_logout_supported": True,
                "backchannel_logout_session_supported": True,
            }
        )

    # Minting --------------------------------------------------------------------------------

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "sub": grant.user["sub"],
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "sid": grant.sid,
            "auth_time": now,
        } | {name: value for name, value in grant.user.items() if name != "sub"}
        claims |= self.behaviour.id_token_claims
        claims = {name: value for name, value in claims.items() if value is not None}
        header = {"typ": "JWT"} | self.behaviour.id_token_header
        return self.forge(claims, header, self.behaviour.id_token_forgery)

    def forge(self, claims: dict[str, Any], header: dict[str, Any], forgery: Forgery | None) -> str:
        """``claims`` signed properly, or forged the way ``forgery`` says."""
        signing_key = self.keys[self.signing_kid]
        if forgery is None:
            return self.sign(claims, header=header)
        if forgery == "alg_none":
            return compact({"alg": "none", **header}, claims)
        if forgery == "bad_signature":
            # Signed by a key nobody published, under the kid of the published one.
            impostor = self.add_key(signing_key.key_type, publish=False)  # type: ignore[arg-type]
            return self.sign(claims, kid=impostor, header=header | {"kid": signing_key.kid})
        assert isinstance(signing_key, RSAKey), "the HS256 forgery needs an RSA key"
        secret = signing_key.as_bytes(encoding="PEM", private=False)
        unsigned = compact(header | {"alg": "HS256", "kid": signing_key.kid}, claims)
        unsigned = unsigned.rsplit(".", 1)[0]
        signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        return f"{unsigned}.{b64url(signature)}"

    def logout_token(
        self,
        *,
        header: dict[str, Any] | None = None,
        forgery: Forgery | None = None,
        **overrides: Any,
    ) -> str:
        """A back-channel logout token for the BFF; overrides of None remove claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        } | overrides
        claims = {name: value for name, value in claims.items() if value is not None}
        return self.forge(claims, {"typ": "logout+jwt"} | (header or {}), forgery)

    # Endpoints ------------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        redirect_uri, state = params["redirect_uri"], params.get("state", "")
        if self.behaviour.authorize_error is not None:
            error = self.behaviour.authorize_error
            return RedirectResponse(f"{redirect_uri}?error={error}&state={state}", 302)
        if params.get("client_id") != CLIENT_ID or params.get("code_challenge_method") != "S256":
            return PlainTextResponse("bad authorization request", status_code=400)
        code = secrets.token_urlsafe(16)
        self.users[self.next_user["sub"]] = dict(self.next_user)
        self.codes[code] = Grant(
            user=dict(self.next_user),
            sid=uuid.uuid4().hex,
            nonce=params["nonce"],
            code_challenge=params["code_challenge"],
            redirect_uri=redirect_uri,
        )
        return RedirectResponse(f"{redirect_uri}?code={code}&state={state}&iss={self.url}", 302)

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("grant_type") in ("authorization_code", "refresh_token"):
            self.token_requests.append(TokenRequest(form, request.headers.get("Authorization")))
        if form.get("grant_type") == "authorization_code":
            return self._redeem_code(request, form)
        if form.get("grant_type") == "refresh_token":
            return await self._refresh(request, form)
        return await super()._token(request)

    def _redeem_code(self, request: Request, form: dict[str, str]) -> Response:
        if self._authenticate_client(request.headers.get("Authorization")) != CLIENT_ID:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        if (
            grant is None
            or challenge != grant.code_challenge
            or form.get("redirect_uri") != grant.redirect_uri
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return self._token_answer(grant, with_id_token=True)

    async def _refresh(self, request: Request, form: dict[str, str]) -> Response:
        if self._authenticate_client(request.headers.get("Authorization")) != CLIENT_ID:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if self.behaviour.refresh_delay_seconds:
            await asyncio.sleep(self.behaviour.refresh_delay_seconds)
        if self.token_endpoint.failure_status is not None:
            return JSONResponse({"error": "unavailable"}, self.token_endpoint.failure_status)
        grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if grant is None or self.behaviour.refresh_error is not None:
            error = self.behaviour.refresh_error or "invalid_grant"
            return JSONResponse({"error": error}, status_code=400)
        self.refreshes += 1
        return self._token_answer(grant, with_id_token=False)

    def _token_answer(self, grant: Grant, *, with_id_token: bool) -> Response:
        lifetime = self.behaviour.access_token_lifetime_seconds
        answer: dict[str, Any] = {
            "access_token": self.access_token(
                sub=grant.user["sub"], sid=grant.sid, exp=int(time.time()) + lifetime
            ),
            "token_type": "Bearer",
            "expires_in": lifetime,
        }
        if self.behaviour.issue_refresh_tokens:
            refresh_token = secrets.token_urlsafe(24)
            self.refresh_tokens[refresh_token] = grant
            answer["refresh_token"] = refresh_token
        if with_id_token:
            answer["id_token"] = self.id_token(grant)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    async def _userinfo(self, request: Request) -> Response:
        # Only ever called with this provider's own access tokens, so reading the sub suffices.
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        payload = token.split(".")[1]
        sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
        return JSONResponse(self.users[sub] | self.behaviour.userinfo_claims)

    async def _revoke(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if self._authenticate_client(request.headers.get("Authorization")) != CLIENT_ID:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.revoked.append(form["token"])
        self.refresh_tokens.pop(form["token"], None)
        return Response(status_code=200)

    async def _end_session(self, request: Request) -> Response:
        self.end_session_requests.append(dict(request.query_params))
        return PlainTextResponse("signed out")


def new_user(**claims: Any) -> dict[str, Any]:
    """A user as the provider knows them: a fresh sub and the usual profile claims."""
    sub = str(uuid.uuid4())
    return {
        "sub": sub,
        "name": "Alice Liddell",
        "email": f"alice-{sub[:8]}@example.test",
        "email_verified": True,
        "preferred_username": f"alice-{sub[:8]}",
    } | claims
