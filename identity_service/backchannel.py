"""OpenID Back-Channel Logout: telling clients that a sign-in session has ended.

When a session ends, every client that received tokens under it and registered a
``backchannel_logout_uri`` is sent a logout token (``typ`` ``logout+jwt``; iss, aud = the client,
iat, exp, jti, sub, sid and the back-channel logout event; never a nonce) as a form POST
``logout_token=…``. Clients are notified concurrently; each delivery is retried a few times on a
transport error or a 5xx/429 answer, with jittered backoff, and then given up and logged — a
client that never hears still loses the session's refresh tokens, which were revoked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import httpx
from joserfc.jwk import KeySet
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from identity_service.clients import Client
from identity_service.jwt_tokens import sign_logout_token
from identity_service.keys import SigningKeys
from identity_service.sessions import EndedSession

logger = logging.getLogger("identity_service.backchannel")

DELIVERY_ATTEMPTS: Final = 3
DELIVERY_DEADLINE_SECONDS: Final = 15.0  # all attempts to one client, backoff included
# Per attempt: the spec expects clients to answer at once (they only drop a session).
DELIVERY_TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)
RETRY_WAIT_INITIAL_SECONDS: Final = 0.2
RETRY_WAIT_MAX_SECONDS: Final = 2.0


class _RetryableAnswer(Exception):
    """The client answered with a status worth retrying (5xx or 429)."""


def build_delivery_client() -> httpx.AsyncClient:
    """The HTTP client logout tokens are sent with; redirects are not followed (spec §2.5)."""
    return httpx.AsyncClient(timeout=DELIVERY_TIMEOUT, follow_redirects=False)


class BackchannelLogout:
    def __init__(self, http_client: httpx.AsyncClient, keys: SigningKeys, issuer: str) -> None:
        self._http = http_client
        self._keys = keys
        self._issuer = issuer

    async def notify(self, ended_sessions: Sequence[EndedSession]) -> None:
        """Send a logout token to every client of each ended session; failed deliveries are
        logged, not raised (the sessions have ended whatever the clients hear)."""
        deliveries = [
            (client, ended) for ended in ended_sessions for client in ended.clients_to_notify
        ]
        if not deliveries:
            return
        key_set = await self._keys.current_key_set()
        await asyncio.gather(
            *(self._notify_client(client, ended, key_set) for client, ended in deliveries)
        )

    async def _notify_client(self, client: Client, ended: EndedSession, key_set: KeySet) -> None:
        assert client.backchannel_logout_uri is not None
        token = sign_logout_token(
            key_set, self._issuer, client.client_id, ended.account_id, ended.session_id
        )
        try:
            await self._deliver(client.backchannel_logout_uri, token)
        except (httpx.HTTPError, _RetryableAnswer) as error:
            logger.warning(
                "back-channel logout not delivered",
                extra={"client_id": client.client_id, "error": repr(error)},
            )

    async def _deliver(self, uri: str, token: str) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((httpx.TransportError, _RetryableAnswer)),
            wait=wait_random_exponential(
                multiplier=RETRY_WAIT_INITIAL_SECONDS, max=RETRY_WAIT_MAX_SECONDS
            ),
            stop=stop_after_attempt(DELIVERY_ATTEMPTS)
            | stop_after_delay(DELIVERY_DEADLINE_SECONDS),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._http.post(
                    uri,
                    data={"logout_token": token},
                    headers={"Cache-Control": "no-store"},
                )
                if response.status_code >= 500 or response.status_code == 429:
                    raise _RetryableAnswer(f"answered {response.status_code}")
                if response.status_code >= 400:
                    logger.warning(
                        "back-channel logout refused",
                        extra={"uri": uri, "status": response.status_code},
                    )
