"""Access tokens for service-to-service calls, from the OAuth 2.0 client-credentials grant.

One ``ClientCredentialsTokenSource`` per upstream audience: it keeps the current token, renews it
before it expires, and makes one token request however many callers want a token at once. When
the provider cannot be reached it raises ``UpstreamUnavailable`` (503 with ``Retry-After``), but
keeps handing out the current token while that is still valid.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from servicekit.errors import UpstreamUnavailable
from servicekit.tokens import fetch_provider_metadata

logger = logging.getLogger("servicekit.client_credentials")

MIN_RENEW_MARGIN_SECONDS = 30.0  # renew at least this long before expiry...
RENEW_MARGIN_FRACTION = 0.1  # ...or this fraction of the lifetime, whichever is longer
EXPIRY_SAFETY_SECONDS = 5.0  # never hand out a token this close to expiry (clock skew, transit)
DEFAULT_LIFETIME_SECONDS = 60  # when the provider omits expires_in (it is only RECOMMENDED)
DEFAULT_RETRY_AFTER_SECONDS = 5
MAX_RETRY_AFTER_SECONDS = 300


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # clock time from which a new token is requested
    expires_at: float  # clock time from which this one is no longer handed out


class ClientCredentialsTokenSource:
    """Bearer tokens for ``audience``, as the confidential client ``client_id``."""

    def __init__(
        self,
        http_client: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        audience: str,
        scopes: Iterable[str] = (),
        token_endpoint: str | None = None,
        issuer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (token_endpoint is None) == (issuer is None):
            raise ValueError("give exactly one of token_endpoint or issuer")
        self._http = http_client
        # RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding.
        self._auth = httpx.BasicAuth(quote(client_id, safe=""), quote(client_secret, safe=""))
        # BRIEF §5: RFC 8707 providers read "resource", Auth0-style providers read "audience".
        self._form = {
            "grant_type": "client_credentials",
            "audience": audience,
            "resource": audience,
        }
        if scope := " ".join(scopes):
            self._form["scope"] = scope
        self._token_endpoint = token_endpoint
        self._issuer = issuer
        self._clock = clock
        self._token: _Token | None = None
        self._retry_not_before = -math.inf  # after a failed request, don't ask again until then
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A valid access token, from the cache when it is not due for renewal."""
        current = self._token
        if current is not None and self._clock() < current.renew_at:
            return current.value
        async with self._lock:  # one request for every caller that arrives while it runs
            current, now = self._token, self._clock()
            if current is not None and now < current.renew_at:
                return current.value
            if now < self._retry_not_before:
                if current is not None and now < current.expires_at:
                    return current.value
                raise UpstreamUnavailable(
                    "The identity provider is unavailable.",
                    retry_after=math.ceil(self._retry_not_before - now),
                )
            try:
                self._token = await self._request_token()
            except UpstreamUnavailable as error:
                self._retry_not_before = self._clock() + error.retry_after
                if current is not None and self._clock() < current.expires_at:
                    return current.value
                raise
            return self._token.value

    async def _request_token(self) -> _Token:
        requested_at = self._clock()
        if self._token_endpoint is None:
            assert self._issuer is not None
            metadata = await fetch_provider_metadata(self._http, self._issuer)
            endpoint = metadata.get("token_endpoint")
            if not isinstance(endpoint, str):
                raise UpstreamUnavailable("The identity provider publishes no token endpoint.")
            self._token_endpoint = endpoint
        try:
            response = await self._http.post(
                self._token_endpoint,
                data=self._form,
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            logger.warning("token request failed", extra={"error": repr(error)})
            raise UpstreamUnavailable(
                "The identity provider could not be reached.",
                retry_after=DEFAULT_RETRY_AFTER_SECONDS,
            ) from error
        body = _json_object(response)
        if response.status_code != 200:
            logger.warning(
                "token request refused",
                extra={"status": response.status_code, "oauth_error": body.get("error")},
            )
            raise UpstreamUnavailable(
                "The identity provider refused a token.", retry_after=_retry_after(response)
            )
        access_token, token_type = body.get("access_token"), body.get("token_type")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamUnavailable("The identity provider's token response has no token.")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise UpstreamUnavailable("The identity provider issued no bearer token.")
        lifetime = _seconds(body.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        if not math.isfinite(lifetime) or lifetime <= EXPIRY_SAFETY_SECONDS:
            raise UpstreamUnavailable("The identity provider's token expires too soon.")
        # Renew early, but no earlier than half-way, so short-lived tokens are still reused.
        margin = min(max(MIN_RENEW_MARGIN_SECONDS, lifetime * RENEW_MARGIN_FRACTION), lifetime / 2)
        return _Token(
            value=access_token,
            renew_at=requested_at + lifetime - margin,
            expires_at=requested_at + lifetime - EXPIRY_SAFETY_SECONDS,
        )


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: object) -> float:
    """``expires_in`` as seconds; some providers (Entra ID v1) send it as a string."""
    if not isinstance(value, int | float | str):
        return 0.0
    try:
        return float(value)
    except ValueError:
        return 0.0


def _retry_after(response: httpx.Response) -> int:
    """The provider's ``Retry-After`` in seconds when it gives a usable one."""
    value = response.headers.get("Retry-After", "")
    if value.isdigit():
        return min(max(int(value), 1), MAX_RETRY_AFTER_SECONDS)
    return DEFAULT_RETRY_AFTER_SECONDS
