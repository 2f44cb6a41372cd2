"""Verifying the JWT access tokens (RFC 9068) that the configured OpenID Provider issues.

Signing keys come only from the issuer's JWKS, found by OpenID discovery; whatever a token's header
says about keys (``jku``, ``x5u``, an embedded ``jwk``) is never consulted. The JWKS is cached
and re-fetched when a token names an unknown ``kid`` — at most once per
``jwks_refetch_interval_seconds`` and once for any number of concurrent callers — so tokens with
made-up ``kid``s cannot make a service hammer its provider.

Who a token speaks for becomes a ``Principal``. Machine clients (the client-credentials grant) are
principals like users, identified by ``iss`` + ``sub`` (BRIEF §6); the issuer is fixed per
deployment, so ``Principal.id`` is the ``sub`` for users and ``machine:<sub>`` for machines. User
tokens whose ``sub`` starts with ``machine:`` are refused, so the two can never collide.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

import httpx
from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import JWKRegistry, Key
from joserfc.jwt import JWTClaimsRegistry

from servicekit.errors import InsufficientScope, Unauthorized, UpstreamUnavailable

logger = logging.getLogger("servicekit.tokens")

# Asymmetric algorithms only: an HMAC "signature" keyed with a public key proves nothing.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
    | {"Ed25519"}  # RFC 9864's fully-specified successor of EdDSA
)
MAX_LEEWAY_SECONDS = 60  # SECURITY-CHECKLIST: clock-skew allowance on exp/nbf/iat of at most 60 s
MACHINE_ID_PREFIX = "machine:"
NO_KEYS_RETRY_SECONDS = 2.0  # with no usable JWKS at all, retry the provider this often at most
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_GENERIC_TYPES = frozenset({"jwt", "application/jwt"})  # Auth0, Entra ID and Keycloak still send it
_ACCEPTED_TYPES = _ACCESS_TOKEN_TYPES | _GENERIC_TYPES
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash")
_CLIENT_ID_CLAIMS = ("client_id", "azp", "appid", "cid")  # RFC 9068, OIDC, Entra v1, Okta
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _invalid(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="invalid_token", headers=_BEARER_CHALLENGE)


def bearer_token_from_header(value: str | None) -> str:
    """The token in an ``Authorization: Bearer <token>`` header value."""
    if not value:
        raise Unauthorized("An access token is required.", headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise _invalid("The Authorization header must be 'Bearer <token>'.")
    return token


@dataclass(frozen=True)
class Principal:
    """The user or machine client an access token speaks for."""

    issuer: str
    subject: str
    kind: Literal["user", "machine"]
    client_id: str | None
    scopes: frozenset[str]
    claims: Mapping[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def id(self) -> str:
        """Stable id: ``sub`` for users, ``machine:<sub>`` for machine clients (see module doc)."""
        return MACHINE_ID_PREFIX + self.subject if self.kind == "machine" else self.subject

    def require_scope(self, scope: str) -> None:
        """Refuse a machine client whose token lacks ``scope``.

        Users are not scope-checked: their tokens carry the BFF's OpenID scopes, and what they may
        do is decided by membership. Machine clients act only within their token's scopes.
        """
        if self.kind == "machine" and scope not in self.scopes:
            raise InsufficientScope(
                f"This action needs the scope '{scope}'.",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )


def is_machine_token(claims: Mapping[str, Any], client_id: str | None) -> bool:
    """Whether ``claims`` come from a client-credentials grant, as each known provider marks it.

    Auth0 sets ``gty=client-credentials``; Entra ID sets ``idtyp=app`` (enable that optional
    claim); the embedded provider, Okta and RFC 9068 providers set ``sub`` to the client id;
    Keycloak names the service-account user ``service-account-<client id>``.
    """
    if claims.get("gty") == "client-credentials" or claims.get("idtyp") == "app":
        return True
    if client_id is None:
        return False
    return claims.get("sub") == client_id or (
        claims.get("preferred_username") == "service-account-" + client_id.lower()
    )


def _space_separated(value: object) -> set[str]:
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal for already-verified access-token claims."""
    client_id = next(
        (c for name in _CLIENT_ID_CLAIMS if isinstance(c := claims.get(name), str)), None
    )
    machine = is_machine_token(claims, client_id)
    scopes = _space_separated(claims.get("scope")) | _space_separated(claims.get("scp"))
    if machine:  # Entra ID puts application permissions in "roles"
        scopes |= _space_separated(claims.get("roles"))
    subject = str(claims["sub"])
    if not machine and subject.startswith(MACHINE_ID_PREFIX):
        raise _invalid("The access token's subject is not acceptable.")
    return Principal(
        issuer=str(claims["iss"]),
        subject=subject,
        kind="machine" if machine else "user",
        client_id=client_id,
        scopes=frozenset(scopes),
        claims=MappingProxyType(dict(claims)),
    )


async def fetch_json(http_client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    """GET a JSON object from the identity provider, or raise ``UpstreamUnavailable``."""
    try:
        response = await http_client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as error:
        logger.warning(
            "identity provider request failed", extra={"what": what, "error": repr(error)}
        )
        raise UpstreamUnavailable(f"The identity provider's {what} is unavailable.") from error
    if not isinstance(document, dict):
        raise UpstreamUnavailable(f"The identity provider's {what} is not a JSON object.")
    return document


async def fetch_provider_metadata(http_client: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
    """The issuer's OpenID discovery document, checked to name exactly ``issuer``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    metadata = await fetch_json(http_client, url, "discovery document")
    if metadata.get("issuer") != issuer:
        logger.error("discovery document names another issuer", extra={"url": url})
        raise UpstreamUnavailable(
            "The identity provider's discovery document names another issuer."
        )
    return metadata


class SigningAlgorithm(Protocol):
    """What ``ProviderKeys`` needs of a JWS algorithm (``JWSRegistry.algorithms[name]``)."""

    def check_key(self, key: Any) -> None:
        """Raise ``JoseError`` unless ``key`` can verify this algorithm's signatures."""


class ProviderKeys:
    """The signing keys one issuer publishes in its JWKS, found through its discovery document.

    Shared by access-token verification here and the BFF's ID-token and logout-token checks, so
    the caching and throttling rules in the module docstring hold for every token Parley reads.
    """

    def __init__(
        self,
        issuer: str,
        http_client: httpx.AsyncClient,
        *,
        refetch_interval_seconds: float = 30.0,
        max_age_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._http = http_client
        self._refetch_interval = refetch_interval_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._jwks_uri: str | None = None
        self._keys: list[Key] | None = None
        self._fetched_at = -math.inf  # clock time of the last successful JWKS fetch
        self._attempted_at = -math.inf  # clock time of the last JWKS fetch, successful or not
        self._fetches = 0  # lets callers queued behind an in-flight fetch reuse its result
        self._fetch_lock = asyncio.Lock()

    async def key_for(self, algorithm: SigningAlgorithm, kid: str | None) -> Key | None:
        """The published key that verifies ``algorithm`` signatures under ``kid``, if any.

        Raises ``UpstreamUnavailable`` only when no keys could be fetched at all.
        """
        if self._keys is None:
            await self._refresh(min_interval=min(self._refetch_interval, NO_KEYS_RETRY_SECONDS))
        elif self._clock() - self._fetched_at >= self._max_age:
            await self._refresh(min_interval=self._refetch_interval)
        if self._keys is None:  # a concurrent first fetch failed
            raise UpstreamUnavailable("The identity provider's keys are unavailable.")
        key = self._find(algorithm, kid)
        if key is None and kid is not None:  # perhaps the provider rotated its keys
            await self._refresh(min_interval=self._refetch_interval)
            key = self._find(algorithm, kid)
        return key

    def _find(self, algorithm: SigningAlgorithm, kid: str | None) -> Key | None:
        usable = []
        for key in self._keys or ():
            try:
                algorithm.check_key(key)  # key type, curve, "use" and "alg" all fit
            except JoseError:
                continue
            usable.append(key)
        if kid is None:
            # Without a kid the choice is only unambiguous when one key fits.
            return usable[0] if len(usable) == 1 else None
        return next((key for key in usable if key.kid == kid), None)

    async def _refresh(self, min_interval: float) -> None:
        """Fetch the JWKS once for all concurrent callers, and not within ``min_interval`` s."""
        fetches_seen = self._fetches
        async with self._fetch_lock:
            if self._fetches != fetches_seen:
                return  # another caller fetched while this one waited
            waited = self._clock() - self._attempted_at
            if waited < min_interval:
                if self._keys is None:
                    raise UpstreamUnavailable(
                        "The identity provider's keys are unavailable.",
                        retry_after=math.ceil(min_interval - waited),
                    )
                return
            self._attempted_at = self._clock()
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._attempted_at
            except UpstreamUnavailable:
                if self._keys is None:
                    raise
                # Keep verifying with the keys we have; fetch_json logged the failure.
            finally:
                self._fetches += 1

    async def _fetch(self) -> list[Key]:
        if self._jwks_uri is None:
            metadata = await fetch_provider_metadata(self._http, self._issuer)
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise UpstreamUnavailable("The identity provider publishes no jwks_uri.")
            self._jwks_uri = jwks_uri
        document = await fetch_json(self._http, self._jwks_uri, "JWKS")
        if not isinstance(document.get("keys"), list):
            raise UpstreamUnavailable("The identity provider's JWKS has no keys.")
        keys = []
        for entry in document["keys"]:
            # RFC 7517 §5: skip keys we cannot use; a symmetric key has no place in a public JWKS.
            if not isinstance(entry, dict) or entry.get("kty") == "oct":
                continue
            try:
                keys.append(JWKRegistry.import_key(entry))
            except (JoseError, ValueError, TypeError):
                logger.warning("skipping an unusable JWKS key", extra={"kid": entry.get("kid")})
        return keys


class AccessTokenVerifier:
    """Verifies access tokens for one API audience from one issuer."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        http_client: httpx.AsyncClient,
        *,
        algorithms: Iterable[str] = ("RS256", "ES256", "PS256", "EdDSA", "Ed25519"),
        leeway_seconds: int = 60,
        jwks_refetch_interval_seconds: float = 30.0,
        jwks_max_age_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._algorithms = frozenset(algorithms)
        if not self._algorithms or not self._algorithms <= SUPPORTED_ALGORITHMS:
            raise ValueError(
                f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}"
            )
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}")
        self._keys = ProviderKeys(
            issuer,
            http_client,
            refetch_interval_seconds=jwks_refetch_interval_seconds,
            max_age_seconds=jwks_max_age_seconds,
            clock=clock,
        )
        self._registry = jws.JWSRegistry(
            algorithms=sorted(self._algorithms), strict_check_header=False
        )
        self._claims_registry = JWTClaimsRegistry(
            leeway=leeway_seconds,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify(self, token: str) -> Principal:
        """The principal ``token`` speaks for; ``Unauthorized`` (invalid_token) if it is not."""
        try:
            signed = jws.extract_compact(token.encode(), registry=self._registry)
            header = signed.headers()
            claims = json.loads(signed.payload)
        except (JoseError, ValueError, TypeError) as error:
            raise _invalid("The access token is not a well-formed signed JWT.") from error
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if alg not in self._algorithms:
            raise _invalid("The access token's signing algorithm is not accepted.")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("The access token's key id is malformed.")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES):
            raise _invalid("The token is not an access token.")
        if not isinstance(claims, dict):
            raise _invalid("The access token's payload is not a JSON object.")
        if typ is None or typ.lower() not in _ACCESS_TOKEN_TYPES:
            _reject_id_token(claims)
        self._validate_claims(claims)
        key = await self._signing_key(alg, kid)
        try:
            valid = jws.validate_compact(signed, key, registry=self._registry)
        except JoseError as error:
            raise _invalid("The access token's signature is invalid.") from error
        if not valid:
            raise _invalid("The access token's signature is invalid.")
        return principal_from_claims(claims)

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        try:
            self._claims_registry.validate(claims)
        except ExpiredTokenError as error:
            raise _invalid("The access token has expired.") from error
        except ClaimError as error:
            raise _invalid(
                f"The access token's '{error.claim}' claim is missing or invalid."
            ) from error

    async def _signing_key(self, alg: str, kid: str | None) -> Key:
        # alg is already known to be allowed, so the registry has it.
        key = await self._keys.key_for(self._registry.algorithms[alg], kid)
        if key is None:
            raise _invalid("The access token's signing key is unknown.")
        return key


def _reject_id_token(claims: Mapping[str, Any]) -> None:
    """Refuse an ID token presented as an access token (the header ``typ`` is the generic JWT)."""
    keycloak_type = claims.get("typ")
    if isinstance(keycloak_type, str):  # Keycloak marks every token; older ones put nonce in all
        if keycloak_type.lower() != "bearer":
            raise _invalid("The token is not an access token.")
    elif any(name in claims for name in _ID_TOKEN_CLAIMS):
        raise _invalid("An ID token is not an access token.")
