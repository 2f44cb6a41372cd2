"""The BFF as an OpenID Connect relying party: the calls it makes to the provider.

Provider-agnostic: only the issuer, the client's id and secret, the scopes and the API audience are
configured; every endpoint comes from the issuer's discovery document. Tokens are requested for
the API audience under both names a provider may read (RFC 8707 ``resource`` and Auth0-style
``audience``, BRIEF §5).

A call to the provider ends in a result, or in one of:

    ProviderRejected     the provider answered with an OAuth error (e.g. ``invalid_grant``)
    UpstreamUnavailable  the provider could not be reached, or answered 5xx or nonsense

Validating what comes back (ID and logout tokens) is ``bff.provider_tokens``'s job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx

from servicekit.errors import UpstreamUnavailable
from servicekit.tokens import fetch_provider_metadata

logger = logging.getLogger("bff.oidc")

# Seconds; the provider is usually near and fast, and a browser is waiting on each call.
PROVIDER_TIMEOUT: Final = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0)
_REQUIRED_ENDPOINTS: Final = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class ProviderRejected(Exception):
    """The provider answered a token-endpoint call with an OAuth error (RFC 6749 §5.2)."""

    def __init__(self, error: str, status: int) -> None:
        self.error = error
        self.status = status
        super().__init__(f"the provider answered {status} {error}")


@dataclass(frozen=True)
class TokenSet:
    """A token-endpoint answer. Never logged, never sent to the browser."""

    access_token: str = field(repr=False)
    expires_in: int | None  # seconds, when the provider says
    refresh_token: str | None = field(repr=False)
    refresh_expires_in: int | None  # seconds; Keycloak says, most providers don't
    id_token: str | None = field(repr=False)


@dataclass(frozen=True)
class ProviderEndpoints:
    """The parts of the discovery document the BFF uses."""

    authorization: str
    token: str
    userinfo: str | None
    revocation: str | None
    end_session: str | None
    client_secret_basic: bool  # else client_secret_post (RFC 8414: basic is the default)


def code_challenge(code_verifier: str) -> str:
    """The PKCE S256 challenge for ``code_verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OpenIdProvider:
    """The configured provider, as the BFF's confidential client sees it."""

    def __init__(
        self,
        http_client: httpx.AsyncClient,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        audience: str,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._http = http_client
        self._client_secret = client_secret
        self._redirect_uri = redirect_uri
        self._scope = " ".join(scopes)
        self._audience = audience
        self._endpoints: ProviderEndpoints | None = None
        self._discovery_lock = asyncio.Lock()

    async def endpoints(self) -> ProviderEndpoints:
        """The provider's endpoints, discovered on first use and then kept."""
        if self._endpoints is None:
            async with self._discovery_lock:
                if self._endpoints is None:
                    self._endpoints = _endpoints_from(
                        await fetch_provider_metadata(self._http, self.issuer)
                    )
        return self._endpoints

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        """Where to send the browser to sign in: authorization code with PKCE S256."""
        endpoints = await self.endpoints()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self._redirect_uri,
            "scope": self._scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge(code_verifier),
            "code_challenge_method": "S256",
            "resource": self._audience,
            "audience": self._audience,
        }
        # merge, not replace: some endpoints carry a query of their own (e.g. an Azure B2C policy)
        return str(httpx.URL(endpoints.authorization).copy_merge_params(params))

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        """Redeem an authorization code (with its PKCE verifier) for tokens."""
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self._redirect_uri,
                "code_verifier": code_verifier,
                "resource": self._audience,
                "audience": self._audience,
            }
        )

    async def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for a refresh token; the answer may carry a rotated refresh token."""
        return await self._token_request(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "resource": self._audience,
                "audience": self._audience,
            }
        )

    async def userinfo(self, access_token: str) -> dict[str, Any] | None:
        """The userinfo claims, or None when the provider has no userinfo for this token.

        Many providers answer userinfo only for their own tokens, not for a token issued to an
        API audience; the ID token's claims then stand alone.
        """
        endpoints = await self.endpoints()
        if endpoints.userinfo is None:
            return None
        try:
            response = await self._http.get(
                endpoints.userinfo,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            logger.warning("userinfo request failed", extra={"error": type(error).__name__})
            return None
        if response.status_code != 200:
            logger.info("no userinfo for this token", extra={"status": response.status_code})
            return None
        try:
            claims = response.json()
        except ValueError:
            # A signed or encrypted userinfo (application/jwt) is not requested by this client.
            logger.warning(
                "userinfo is not JSON", extra={"content_type": response.headers.get("content-type")}
            )
            return None
        return claims if isinstance(claims, dict) else None

    async def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token (RFC 7009) if the provider can; failures are only logged."""
        try:
            endpoints = await self.endpoints()
            if endpoints.revocation is None:
                return
            response = await self._authenticated_post(
                endpoints.revocation, {"token": refresh_token, "token_type_hint": "refresh_token"}
            )
        except (httpx.HTTPError, UpstreamUnavailable) as error:
            logger.warning("token revocation failed", extra={"error": type(error).__name__})
            return
        if response.status_code != 200:
            logger.warning("token revocation refused", extra={"status": response.status_code})

    async def end_session_url(self, *, post_logout_redirect_uri: str) -> str:
        """Where to send the browser to end the provider session, or ``post_logout_redirect_uri``
        itself when the provider has no end-session endpoint (RP-Initiated Logout 1.0).

        The ID token is not sent as ``id_token_hint``: it would travel through the browser in a
        redirect, and no token ever reaches the browser. ``client_id`` names the client instead;
        the provider knows its own session by its own cookie and may ask the user to confirm.
        """
        endpoints = await self.endpoints()
        if endpoints.end_session is None:
            return post_logout_redirect_uri
        params = {
            "client_id": self.client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
        }
        return str(httpx.URL(endpoints.end_session).copy_merge_params(params))

    async def _token_request(self, form: dict[str, str]) -> TokenSet:
        endpoints = await self.endpoints()
        try:
            response = await self._authenticated_post(endpoints.token, form)
        except httpx.HTTPError as error:
            logger.warning("token request failed", extra={"error": type(error).__name__})
            raise UpstreamUnavailable("The identity provider is unavailable.") from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable("The identity provider is unavailable.")
        if response.status_code != 200:
            oauth_error = body.get("error")
            raise ProviderRejected(
                oauth_error if isinstance(oauth_error, str) else "invalid_response",
                response.status_code,
            )
        return _token_set_from(body)

    async def _authenticated_post(self, url: str, form: dict[str, str]) -> httpx.Response:
        endpoints = await self.endpoints()
        if endpoints.client_secret_basic:
            # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
            auth = httpx.BasicAuth(
                quote(self.client_id, safe=""), quote(self._client_secret, safe="")
            )
            return await self._http.post(url, data=form, auth=auth)
        credentials = {"client_id": self.client_id, "client_secret": self._client_secret}
        return await self._http.post(url, data=form | credentials)


def _endpoints_from(metadata: dict[str, Any]) -> ProviderEndpoints:
    missing = [name for name in _REQUIRED_ENDPOINTS if not isinstance(metadata.get(name), str)]
    if missing:
        logger.error("discovery document lacks endpoints", extra={"missing": missing})
        raise UpstreamUnavailable("The identity provider's discovery document is incomplete.")

    def optional(name: str) -> str | None:
        value = metadata.get(name)
        return value if isinstance(value, str) else None

    methods = metadata.get("token_endpoint_auth_methods_supported")
    basic = not isinstance(methods, list) or "client_secret_basic" in methods
    return ProviderEndpoints(
        authorization=metadata["authorization_endpoint"],
        token=metadata["token_endpoint"],
        userinfo=optional("userinfo_endpoint"),
        revocation=optional("revocation_endpoint"),
        end_session=optional("end_session_endpoint"),
        client_secret_basic=basic,
    )


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _token_set_from(body: dict[str, Any]) -> TokenSet:
    access_token = body.get("access_token")
    token_type = body.get("token_type")
    if not isinstance(access_token, str) or not access_token:
        raise UpstreamUnavailable("The identity provider's token answer has no access token.")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        # A DPoP- or MAC-bound token could not be used by forwarding it as a bearer token.
        raise UpstreamUnavailable("The identity provider issued a token of an unexpected type.")
    return TokenSet(
        access_token=access_token,
        expires_in=_positive_int(body.get("expires_in")),
        refresh_token=_optional_text(body.get("refresh_token")),
        refresh_expires_in=_positive_int(body.get("refresh_expires_in")),
        id_token=_optional_text(body.get("id_token")),
    )
