"""Who is calling: the principal behind a request's or WebSocket's bearer access token.

Every service builds one ``BearerAuthentication`` at start-up (one HTTP client for discovery and
JWKS, one verifier for ``OIDC_ISSUER`` and ``API_AUDIENCE``) and asks it for the principal of
each call. Machine clients send their own tokens; browser calls arrive through the BFF, which
attaches the signed-in user's token, so services see one kind of credential.
"""

from __future__ import annotations

from typing import Final

import httpx
from starlette.requests import HTTPConnection

from servicekit.settings import ServiceSettings
from servicekit.tokens import AccessTokenVerifier, Principal, bearer_token_from_header

# Seconds; discovery and JWKS come from the provider, which answers quickly or not at all.
PROVIDER_TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)


class BearerAuthentication:
    """Verifies the bearer tokens a service receives."""

    def __init__(
        self, settings: ServiceSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, transport=transport)
        self.verifier = AccessTokenVerifier(settings.oidc_issuer, settings.api_audience, self._http)

    async def principal(self, connection: HTTPConnection) -> Principal:
        """The principal of an HTTP request or WebSocket handshake; ``Unauthorized`` if none."""
        token = bearer_token_from_header(connection.headers.get("authorization"))
        return await self.verifier.verify(token)

    async def close(self) -> None:
        await self._http.aclose()
