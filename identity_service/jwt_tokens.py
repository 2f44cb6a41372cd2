"""The JWTs the provider signs: access tokens (RFC 9068), ID token claims, logout tokens.

Access tokens:

    header  alg RS256, typ at+jwt, kid
    claims  iss, sub (the account id, or the client id for client credentials), aud
            (API_AUDIENCE), exp, iat, jti, client_id, scope; for people also sid, auth_time, amr

They cannot be revoked: relying services verify them offline, so they are kept short-lived
(``ACCESS_TOKEN_LIFETIME_SECONDS``, 5 minutes by default). Revoking a refresh token stops new
ones from being issued.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jwt
from joserfc.jwk import KeySet

from identity_service.keys import SIGNING_ALGORITHM
from identity_service.refresh_tokens import generate_refresh_token
from identity_service.sessions import PASSWORD_AMR, SignedInUser
from identity_service.store import Account

BACKCHANNEL_LOGOUT_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME_SECONDS: Final = 120  # long enough for delivery with retries


def user_claims(account: Account, scope: str) -> dict[str, Any]:
    """The standard claims about ``account`` that ``scope`` grants (OpenID Core §5.4)."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": str(account.id)}
    if "profile" in scopes:
        claims["name"] = account.display_name
    if "email" in scopes and account.email is not None:
        claims["email"] = account.email
        claims["email_verified"] = account.email_verified_at is not None
    if "phone" in scopes and account.phone is not None:
        claims["phone_number"] = account.phone
        claims["phone_number_verified"] = account.phone_verified_at is not None
    return claims


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]  # authlib is untyped
    """authlib's RFC 9068 generator, with Parley's audience, keys and session claims."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        current_key_set: Callable[[], KeySet],
    ) -> None:
        super().__init__(
            issuer,
            alg=SIGNING_ALGORITHM,
            refresh_token_generator=lambda **_: generate_refresh_token(),
            expires_generator=lifetime_seconds,
        )
        self._audience = audience
        self._current_key_set = current_key_set

    def get_jwks(self) -> KeySet:
        return self._current_key_set()

    def get_audiences(self, client: Any, user: SignedInUser | None, scope: str) -> str:
        """Always API_AUDIENCE: requests naming another resource are refused before this."""
        return self._audience

    def get_auth_time(self, user: SignedInUser | None) -> int | None:
        return None if user is None else int(user.auth_time.timestamp())

    def get_amr(self, user: SignedInUser | None) -> list[str] | None:
        return None if user is None else list(PASSWORD_AMR)

    def get_extra_claims(
        self, client: Any, grant_type: str, user: SignedInUser | None, scope: str
    ) -> dict[str, Any]:
        return {} if user is None else {"sid": str(user.session_id)}

    def get_jti(self, client: Any, grant_type: str, user: SignedInUser | None, scope: str) -> str:
        return uuid.uuid4().hex


def sign_logout_token(
    key_set: KeySet, issuer: str, client_id: str, account_id: uuid.UUID, session_id: uuid.UUID
) -> str:
    """A back-channel logout token (OpenID Back-Channel Logout §2.4) for one client."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_LIFETIME_SECONDS,
        "jti": uuid.uuid4().hex,
        "sub": str(account_id),
        "sid": str(session_id),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    return jwt.encode({"alg": SIGNING_ALGORITHM, "typ": "logout+jwt"}, claims, key_set)
