"""The grants the provider supports, as authlib grants over Parley's stores.

    authorization_code   web clients; PKCE with S256 for every client (plain and no PKCE are
                         refused); an ID token when ``openid`` is in scope
    refresh_token        web clients; every use rotates the token (see refresh_tokens.py)
    client_credentials   machine clients; ``sub`` and ``client_id`` are the client id

Every grant issues RFC 9068 access tokens for API_AUDIENCE; a request naming another resource
(``resource``, RFC 8707, or Auth0's ``audience``) is refused with ``invalid_target``.

These run in an OAuth worker thread (see oauth_server.py): storage goes through ``run_on_loop``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, ClassVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from joserfc.jwk import KeySet

from identity_service.clients import CLIENT_AUTH_METHODS, Client
from identity_service.clock import utc_now
from identity_service.codes import AuthorizationCode, new_family_id
from identity_service.jwt_tokens import user_claims
from identity_service.keys import SIGNING_ALGORITHM
from identity_service.oauth_server import OAuthServer, ProviderRequest, run_on_loop
from identity_service.provider import Provider
from identity_service.refresh_tokens import RefreshToken
from identity_service.sessions import SignedInUser

logger = logging.getLogger("identity_service.grants")


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]  # authlib is untyped
    """RFC 8707 §2: the requested resource is not one this provider issues tokens for."""

    error = "invalid_target"


def check_requested_audience(request: ProviderRequest, audience: str) -> None:
    """Refuse a ``resource`` or ``audience`` parameter naming anything but ``audience``."""
    for name in ("resource", "audience"):
        for value in request.payload.datalist.get(name, []):
            if value != audience:
                raise InvalidTargetError("Tokens are issued only for this provider's API audience.")


def _provider(grant: Any) -> Provider:
    server: OAuthServer = grant.server
    return server.provider


class RequireS256(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only (RFC 9700 §2.1.1): no challenge or "plain" is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send a code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class CheckRequestedAudience:
    """Refuses an authorization request for another resource, redirecting the error."""

    def __init__(self, audience: str) -> None:
        self._audience = audience

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self._check)

    def _check(self, grant: Any, result: object) -> None:
        check_requested_audience(grant.request, self._audience)


class ProviderOpenIDCode(OpenIDCode):  # type: ignore[misc]
    """ID tokens: iss, sub, aud (the client), exp, iat, auth_time, nonce, sid, amr, at_hash, and
    the claims the scope grants."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self._provider = provider

    def exists_nonce(self, nonce: str, request: ProviderRequest) -> bool:
        """Never: the relying party checks the nonce it sent, and a code is used only once."""
        return False

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return run_on_loop(self._provider.keys.current_key_set)

    def get_client_algorithm(self, client: Client) -> str:
        return SIGNING_ALGORITHM

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": SIGNING_ALGORITHM}  # joserfc adds the signing key's kid

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self._provider.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + self._provider.settings.id_token_lifetime_seconds,
        }

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> Any:
        claims = super().get_authorization_code_claims(authorization_code)
        claims["sid"] = authorization_code.session_id
        return claims

    def generate_user_info(self, user: SignedInUser, scope: str) -> dict[str, Any]:
        return user_claims(user.account, scope)


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(CLIENT_AUTH_METHODS)

    def save_authorization_code(self, code: str, request: ProviderRequest) -> None:
        user: SignedInUser = request.user
        data = request.payload.data
        details = AuthorizationCode(
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            account_id=str(user.account.id),
            session_id=str(user.session_id),
            auth_time=int(user.auth_time.timestamp()),
            family_id=new_family_id(),
        )
        run_on_loop(_provider(self).codes.save_code, code, details)

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """The code's details, used up; a code presented again revokes what it produced."""
        provider = _provider(self)
        details = run_on_loop(provider.codes.use_code, code)
        if details is None:
            family = run_on_loop(provider.codes.family_of_used_code, code)
            if family is not None:
                logger.warning("authorization code replayed", extra={"client_id": client.client_id})
                run_on_loop(provider.refresh_tokens.revoke_family, uuid.UUID(family), utc_now())
            return None
        return details if details.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to delete: ``query_authorization_code`` used the code up."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> SignedInUser | None:
        """The person, if their sign-in is still live and their account enabled."""
        user = run_on_loop(
            _provider(self).sessions.get_signed_in_user,
            uuid.UUID(authorization_code.session_id),
            utc_now(),
        )
        if user is None or str(user.account.id) != authorization_code.account_id:
            return None
        return user

    def save_token(self, token: dict[str, Any]) -> None:
        provider = _provider(self)
        user: SignedInUser = self.request.user
        client_id = self.request.client.client_id
        now = utc_now()
        if "refresh_token" in token:
            run_on_loop(
                provider.refresh_tokens.create_refresh_token,
                token["refresh_token"],
                uuid.UUID(self.request.authorization_code.family_id),
                client_id,
                token["scope"],
                user,
                now,
            )
        run_on_loop(provider.sessions.record_client, user.session_id, client_id, now)


class RotatingRefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(CLIENT_AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        provider = _provider(self)
        now = utc_now()
        stored = run_on_loop(provider.refresh_tokens.find_refresh_token, refresh_token, now)
        if stored is None:
            return None
        if stored.used_at is not None or stored.revoked_at is not None:
            logger.warning("refresh token reused; revoking its family")
            run_on_loop(provider.refresh_tokens.revoke_family, stored.family_id, now)
            return None
        return stored if stored.is_usable(now) else None

    def authenticate_user(self, refresh_token: RefreshToken) -> SignedInUser | None:
        return refresh_token.user

    def save_token(self, token: dict[str, Any]) -> None:
        """Rotate: the presented token is marked used and the new one stored, atomically."""
        rotated = run_on_loop(
            _provider(self).refresh_tokens.rotate_refresh_token,
            self.request.refresh_token,
            token["refresh_token"],
            token["scope"],
            utc_now(),
        )
        if not rotated:
            logger.warning("refresh token used concurrently; revoked its family")
            raise InvalidGrantError("The refresh token has already been used.")

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Nothing to do: ``save_token`` marked the token used in the same transaction."""


class MachineCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(CLIENT_AUTH_METHODS)
