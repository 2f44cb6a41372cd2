"""Short-lived authorization state, kept in Redis rather than the database.

Authorization codes live 60 s and are used once, so Redis fits them exactly: the TTL removes
stale codes with no clean-up job, ``GETDEL`` makes "use once" atomic across any number of
provider processes, and the database sees no write per sign-in for them. A lost Redis loses only
sign-ins in flight, which the person simply retries. Codes are stored under their SHA-256, so
reading Redis does not yield usable codes.

A used code leaves a marker naming the refresh-token family it produced; presenting the code
again revokes that family (RFC 6749 §4.1.2: tokens issued from a code used twice are suspect).

Pending authorizations are the requests a person is signing in (or consenting) to: the
authorization request's parameters, kept while the sign-in page is shown.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import asdict, dataclass
from typing import Final

import redis.asyncio as redis

from identity_service.refresh_tokens import token_digest
from identity_service.sessions import PASSWORD_AMR

CODE_LIFETIME_SECONDS: Final = 60  # RFC 6749 §4.1.2 recommends at most 10 minutes
# Seconds a used code is remembered; longer than its lifetime, so any replay is caught.
USED_CODE_MEMORY_SECONDS: Final = 600
# Seconds a person has to sign in before the application must start over.
PENDING_AUTHORIZATION_SECONDS: Final = 900
PENDING_ID_BYTES: Final = 24


@dataclass(frozen=True)
class AuthorizationCode:
    """What a code stands for, in the shape authlib's grants ask about."""

    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    account_id: str
    session_id: str
    auth_time: int  # seconds since the epoch
    # The refresh-token family this code's tokens start; revoked if the code is replayed.
    family_id: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return list(PASSWORD_AMR)


def new_family_id() -> str:
    return str(uuid.uuid4())


class AuthorizationCodes:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._redis = client
        self._prefix = f"{namespace}:identity:"

    async def save_code(self, code: str, details: AuthorizationCode) -> None:
        await self._redis.set(
            self._prefix + "code:" + token_digest(code),
            json.dumps(asdict(details)),
            ex=CODE_LIFETIME_SECONDS,
        )

    async def use_code(self, code: str) -> AuthorizationCode | None:
        """The code's details, removing it; None when it is unknown, expired or already used."""
        digest = token_digest(code)
        stored = await self._redis.getdel(self._prefix + "code:" + digest)
        if stored is None:
            return None
        details = AuthorizationCode(**json.loads(stored))
        await self._redis.set(
            self._prefix + "used-code:" + digest, details.family_id, ex=USED_CODE_MEMORY_SECONDS
        )
        return details

    async def family_of_used_code(self, code: str) -> str | None:
        """The refresh-token family an already-used ``code`` produced, if it was used lately."""
        family = await self._redis.get(self._prefix + "used-code:" + token_digest(code))
        if family is None:
            return None
        return family.decode() if isinstance(family, bytes) else str(family)


class PendingAuthorizations:
    """Authorization requests waiting for a person to sign in or consent."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._redis = client
        self._prefix = f"{namespace}:identity:pending:"

    async def save(self, parameters: list[tuple[str, str]]) -> str:
        """Keep an authorization request's parameters; the id to resume it by."""
        pending_id = secrets.token_urlsafe(PENDING_ID_BYTES)
        await self._redis.set(
            self._prefix + pending_id, json.dumps(parameters), ex=PENDING_AUTHORIZATION_SECONDS
        )
        return pending_id

    async def get(self, pending_id: str) -> list[tuple[str, str]] | None:
        """The parameters saved under ``pending_id``, unless it is unknown or expired."""
        if not pending_id or len(pending_id) > 64:
            return None
        stored = await self._redis.get(self._prefix + pending_id)
        if stored is None:
            return None
        return [(str(name), str(value)) for name, value in json.loads(stored)]

    async def finish(self, pending_id: str) -> None:
        await self._redis.delete(self._prefix + pending_id)
