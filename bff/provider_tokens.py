"""Validating the JWTs the provider sends the BFF: ID tokens and back-channel logout tokens.

The checks are OpenID Connect Core §3.1.3.7, Back-Channel Logout 1.0 §2.6 and RFC 8725, as the
OpenID Foundation's relying-party conformance tests exercise them. Signatures are checked with the
issuer's published keys only (``servicekit.tokens.ProviderKeys``: re-fetched on an unknown
``kid``, throttled) and with asymmetric algorithms only, so ``alg=none`` and an HMAC keyed with a
public key are refused.

    InvalidProviderToken — the token must not be accepted; ``reason`` says why (safe to log)
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from typing import Any, Final

from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from servicekit.tokens import MAX_LEEWAY_SECONDS, ProviderKeys

# RFC 8725 §3.1: a fixed allowlist. Ed25519 is RFC 9864's fully-specified name for EdDSA there.
ALGORITHMS: Final = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")
BACKCHANNEL_LOGOUT_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
_ID_TOKEN_TYPES: Final = frozenset({"jwt", "application/jwt"})
_LOGOUT_TOKEN_TYPES: Final = frozenset({"logout+jwt", "application/logout+jwt"})


class InvalidProviderToken(Exception):
    """A token from (or claiming to be from) the provider failed validation."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProviderTokenValidator:
    """Checks ID tokens and logout tokens issued by ``issuer`` for ``client_id``."""

    def __init__(
        self,
        keys: ProviderKeys,
        *,
        issuer: str,
        client_id: str,
        leeway_seconds: int = MAX_LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._client_id = client_id
        self._registry = jws.JWSRegistry(algorithms=list(ALGORITHMS), strict_check_header=False)

        def now() -> int:
            return int(clock())

        common: dict[str, Any] = {
            "now": now,
            "leeway": leeway_seconds,
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "iat": {"essential": True},
        }
        self._id_token_claims = JWTClaimsRegistry(
            **common, exp={"essential": True}, sub={"essential": True}
        )
        # Back-Channel Logout 1.0 §2.4: exp became required late; older providers omit it.
        self._logout_token_claims = JWTClaimsRegistry(**common)

    async def validate_id_token(self, token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of ``token`` if it is an ID token for this client carrying ``nonce``."""
        claims = await self._verified_claims(token, _ID_TOKEN_TYPES, "ID token")
        self._validate_claims(self._id_token_claims, claims)
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise InvalidProviderToken("the ID token's sub is empty")
        self._check_authorized_party(claims)
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce, nonce):
            raise InvalidProviderToken("the ID token's nonce does not match the login's")
        return claims

    async def validate_logout_token(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` if it is a back-channel logout token for this client."""
        claims = await self._verified_claims(token, _LOGOUT_TOKEN_TYPES, "logout token")
        self._validate_claims(self._logout_token_claims, claims)
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(
            events.get(BACKCHANNEL_LOGOUT_EVENT), dict
        ):
            raise InvalidProviderToken("the logout token lacks the back-channel logout event")
        if "nonce" in claims:  # §2.6: forbidden, so an ID token can't pass for a logout token
            raise InvalidProviderToken("the logout token carries a nonce")
        sid, sub = claims.get("sid"), claims.get("sub")
        if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
            raise InvalidProviderToken("the logout token names neither a sid nor a sub")
        for name in ("sid", "sub"):
            if name in claims and not isinstance(claims[name], str):
                raise InvalidProviderToken(f"the logout token's {name} is not a string")
        self._check_authorized_party(claims)
        return claims

    async def _verified_claims(
        self, token: str, accepted_types: frozenset[str], what: str
    ) -> dict[str, Any]:
        try:
            signed = jws.extract_compact(token.encode(), registry=self._registry)
            header = signed.headers()
            claims = json.loads(signed.payload)
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidProviderToken(f"the {what} is not a well-formed signed JWT") from error
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if alg not in ALGORITHMS:
            raise InvalidProviderToken(f"the {what}'s algorithm {alg!r} is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise InvalidProviderToken(f"the {what}'s key id is malformed")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in accepted_types):
            # RFC 8725 §3.11: explicit typing keeps one kind of token from passing for another.
            raise InvalidProviderToken(f"the {what}'s typ {typ!r} is not accepted")
        if not isinstance(claims, dict):
            raise InvalidProviderToken(f"the {what}'s payload is not a JSON object")
        key = await self._keys.key_for(self._registry.algorithms[alg], kid)
        if key is None:
            raise InvalidProviderToken(f"the {what}'s signing key is not published")
        try:
            valid = jws.validate_compact(signed, key, registry=self._registry)
        except JoseError as error:
            raise InvalidProviderToken(f"the {what}'s signature is invalid") from error
        if not valid:
            raise InvalidProviderToken(f"the {what}'s signature is invalid")
        return claims

    @staticmethod
    def _validate_claims(registry: JWTClaimsRegistry, claims: dict[str, Any]) -> None:
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise InvalidProviderToken("the token has expired") from error
        except ClaimError as error:
            raise InvalidProviderToken(f"the token's {error.claim} is missing or wrong") from error

    def _check_authorized_party(self, claims: dict[str, Any]) -> None:
        """OIDC Core §3.1.3.7 (4, 5): with several audiences the client must be the ``azp``."""
        audience, azp = claims.get("aud"), claims.get("azp")
        several = isinstance(audience, list) and len(audience) > 1
        if (several or azp is not None) and azp != self._client_id:
            raise InvalidProviderToken("the token's azp is not this client")
