"""Revocation (RFC 7009) and RP-initiated logout, and the authorization server assembled.

Revocation: a refresh token is revoked with its whole family (RFC 7009 §2.1 asks that tokens
of the same grant go too). Access tokens are self-contained JWTs that services verify offline,
so they cannot be revoked; the endpoint answers 200 for them, as RFC 7009 §2.2 allows for
tokens it does not revoke, and they expire within ACCESS_TOKEN_LIFETIME_SECONDS.

Logout: authlib validates the request (the ``id_token_hint`` signature against every key the
provider has signed with, ``client_id`` against its ``aud``, the ``post_logout_redirect_uri``
against the client's registered ones); the logout route ends the sessions.
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from identity_service.clients import CLIENT_AUTH_METHODS, Client
from identity_service.clock import utc_now
from identity_service.grants import (
    CheckRequestedAudience,
    CodeGrant,
    MachineCredentialsGrant,
    ProviderOpenIDCode,
    RequireS256,
    RotatingRefreshTokenGrant,
    check_requested_audience,
)
from identity_service.jwt_tokens import AccessTokenGenerator
from identity_service.keys import SIGNING_ALGORITHM
from identity_service.oauth_server import (
    OAuthResponse,
    OAuthServer,
    ProviderRequest,
    error_response,
    run_on_loop,
)
from identity_service.provider import Provider
from identity_service.refresh_tokens import RefreshToken


class RefreshTokenRevocation(RevocationEndpoint):  # type: ignore[misc]  # authlib is untyped
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> RefreshToken | None:
        """The refresh token, whatever the hint says (RFC 7009 §2.1: the hint may be wrong)."""
        server: OAuthServer = self.server
        return run_on_loop(
            server.provider.refresh_tokens.find_refresh_token, token_string, utc_now()
        )

    def revoke_token(self, token: RefreshToken, request: ProviderRequest) -> None:
        server: OAuthServer = self.server
        run_on_loop(server.provider.refresh_tokens.revoke_family, token.family_id, utc_now())


class ProviderEndSession(EndSessionEndpoint):  # type: ignore[misc]
    """Validates logout requests; only ID tokens from this issuer are accepted as hints."""

    def validate_request(self, request: ProviderRequest) -> EndSessionRequest:
        hint = request.payload.data.get("id_token_hint")
        if hint:
            # Access and logout tokens are signed with the same keys: refuse them by type.
            try:
                header = jws.extract_compact(hint.encode()).headers()
            except (JoseError, ValueError) as error:
                raise InvalidRequestError("id_token_hint is not a JWT.") from error
            if header.get("typ", "JWT") != "JWT":
                raise InvalidRequestError("id_token_hint is not an ID token.")
        validated: EndSessionRequest = super().validate_request(request)
        claims = validated.id_token_claims
        server: OAuthServer = self.server
        if claims is not None and claims.get("iss") != server.provider.issuer:
            raise InvalidRequestError("id_token_hint was issued by another provider.")
        return validated

    def is_post_logout_redirect_uri_legitimate(
        self,
        request: ProviderRequest,
        post_logout_redirect_uri: str,
        client: Client,
        logout_hint: str | None,
    ) -> bool:
        """Without an ID token hint, return to the client's registered URI only once the person
        has confirmed on the sign-out page (its form's CSRF token, already checked, is present):
        a confirmed sign-out is RP-Initiated Logout §3's "other means of confirming"."""
        return bool(request.payload.data.get("csrf_token"))

    def get_server_jwks(self) -> KeySet:
        server: OAuthServer = self.server
        return run_on_loop(server.provider.keys.all_public_keys)

    def get_algorithms(self) -> list[str]:
        return [SIGNING_ALGORITHM]

    def resolve_client_from_id_token_claims(self, id_token_claims: dict[str, Any]) -> Client | None:
        audience = id_token_claims.get("aud")
        if isinstance(audience, list) and len(audience) == 1:
            audience = audience[0]
        return self.server.query_client(audience) if isinstance(audience, str) else None


class ProviderServer(OAuthServer):
    """The authorization server with Parley's grants and endpoints."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(provider)
        settings = provider.settings
        self.register_token_generator(
            "default",
            AccessTokenGenerator(
                provider.issuer,
                settings.api_audience,
                settings.access_token_lifetime_seconds,
                lambda: run_on_loop(provider.keys.current_key_set),
            ),
        )
        self.register_grant(
            CodeGrant,
            [
                RequireS256(),
                CheckRequestedAudience(settings.api_audience),
                ProviderOpenIDCode(provider),
            ],
        )
        self.register_grant(RotatingRefreshTokenGrant)
        self.register_grant(MachineCredentialsGrant)
        self.register_endpoint(RefreshTokenRevocation)
        self.register_endpoint(ProviderEndSession)

    def create_token_response(self, request: ProviderRequest) -> OAuthResponse:
        """Refuse tokens for another resource before any grant runs."""
        try:
            check_requested_audience(request, self.provider.settings.api_audience)
        except OAuth2Error as error:
            return error_response(error)
        response: OAuthResponse = super().create_token_response(request)
        return response
