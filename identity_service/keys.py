"""The provider's signing keys: created on first start, kept in the database, rotated by command.

RS256 with 2048-bit RSA keys: OpenID Connect requires every provider and relying party to
support RS256 (Core §15.1), so it works with any client library. ES256 would sign faster, but
tokens here are signed a few times per sign-in, not per request.

Rotation (``parley keys rotate``) retires the current key and makes a new one current at once.
A retired key stays in the JWKS until every token it signed has expired (the longest token
lifetime plus ``PUBLICATION_MARGIN_SECONDS``), so relying parties keep verifying those tokens;
relying parties fetch the new key when they first see its ``kid``. Retired keys stay in the
table: an old ID token presented as ``id_token_hint`` at logout is still recognised as ours.

Importing an RSA private key takes ~0.2 s (the key is validated), so imported keys are cached
per process by ``kid`` — a key never changes once written — and imported off the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import anyio
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import desc, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_service.tables import signing_keys
from servicekit.db import Database

SIGNING_ALGORITHM: Final = "RS256"
RSA_KEY_BITS: Final = 2048
# Seconds a retired key stays published beyond the longest token lifetime: relying parties
# allow up to 60 s of clock skew, and a token may be in flight while they do.
PUBLICATION_MARGIN_SECONDS: Final = 120


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_jwk: dict[str, Any]


def generate_signing_key() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A new key's (kid, private JWK, public JWK)."""
    kid = uuid.uuid4().hex
    key = RSAKey.generate_key(RSA_KEY_BITS, {"kid": kid, "use": "sig", "alg": SIGNING_ALGORITHM})
    return kid, dict(key.as_dict(private=True)), dict(key.as_dict(private=False))


class SigningKeys:
    """The keys in the database, and the current one ready to sign with."""

    def __init__(self, database: Database, max_token_lifetime_seconds: int) -> None:
        self._database = database
        self._retention = timedelta(seconds=max_token_lifetime_seconds + PUBLICATION_MARGIN_SECONDS)
        self._imported: dict[str, RSAKey] = {}
        self._import_lock = asyncio.Lock()

    async def ensure_signing_key(self, now: datetime) -> str:
        """The current key's kid, creating the first key when there is none."""
        current = await self._database.transaction(_current_key)
        if current is not None:
            return current.kid
        kid, private_jwk, public_jwk = await anyio.to_thread.run_sync(generate_signing_key)
        await self._database.transaction(
            lambda connection: _insert_key(connection, kid, private_jwk, public_jwk, now)
        )
        return kid

    async def rotate(self, now: datetime) -> str:
        """Retire the current key and make a new one current; the new kid."""
        kid, private_jwk, public_jwk = await anyio.to_thread.run_sync(generate_signing_key)

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(
                update(signing_keys)
                .where(signing_keys.c.retired_at.is_(None))
                .values(retired_at=now)
            )
            await _insert_key(connection, kid, private_jwk, public_jwk, now)

        await self._database.transaction(work)
        return kid

    async def current_key(self) -> RSAKey:
        """The key to sign with now."""
        current = await self._database.transaction(_current_key)
        if current is None:
            raise RuntimeError("no signing key: the provider creates one at start-up")
        return await self._import(current)

    async def current_key_set(self) -> KeySet:
        """The current key alone, as a key set: joserfc then writes its kid into the header."""
        return KeySet([await self.current_key()])

    async def published_keys(self, now: datetime) -> list[dict[str, Any]]:
        """The public JWKs relying parties may need: current keys and recently retired ones."""
        statement = (
            select(signing_keys.c.public_jwk)
            .where(
                or_(
                    signing_keys.c.retired_at.is_(None),
                    signing_keys.c.retired_at > now - self._retention,
                )
            )
            .order_by(desc(signing_keys.c.created_at))
        )

        async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
            return [dict(row.public_jwk) for row in await connection.execute(statement)]

        return await self._database.transaction(work)

    async def all_public_keys(self) -> KeySet:
        """Every key this provider has ever signed with, retired or not."""

        async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
            rows = await connection.execute(select(signing_keys.c.public_jwk))
            return [dict(row.public_jwk) for row in rows]

        return KeySet.import_key_set({"keys": await self._database.transaction(work)})

    async def _import(self, key: SigningKey) -> RSAKey:
        async with self._import_lock:
            imported = self._imported.get(key.kid)
            if imported is None:
                imported = await anyio.to_thread.run_sync(RSAKey.import_key, key.private_jwk)
                self._imported[key.kid] = imported
            return imported


async def _current_key(connection: AsyncConnection) -> SigningKey | None:
    row = (
        await connection.execute(
            select(signing_keys.c.kid, signing_keys.c.private_jwk)
            .where(signing_keys.c.retired_at.is_(None))
            .order_by(desc(signing_keys.c.created_at), desc(signing_keys.c.kid))
            .limit(1)
        )
    ).first()
    return None if row is None else SigningKey(row.kid, dict(row.private_jwk))


async def _insert_key(
    connection: AsyncConnection,
    kid: str,
    private_jwk: dict[str, Any],
    public_jwk: dict[str, Any],
    now: datetime,
) -> None:
    await connection.execute(
        insert(signing_keys).values(
            kid=kid,
            alg=SIGNING_ALGORITHM,
            private_jwk=private_jwk,
            public_jwk=public_jwk,
            created_at=now,
        )
    )
