"""Refresh tokens: stored as digests, rotated on every use, revoked by family on reuse.

Every refresh token belongs to a family: the tokens descended from one authorization code. Using
a token marks it used and issues its child. A used or revoked token presented again means two
parties hold the family (a stolen token, or a replayed one), so the whole family is revoked and
both must sign in again (RFC 9700 §4.14.2). A refresh token never outlives the sign-in session
it was issued under, and ending that session revokes it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import uuid6
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_service.clients import Client
from identity_service.sessions import SignedInUser
from identity_service.store import account_from_values
from identity_service.tables import accounts, login_sessions, refresh_tokens
from servicekit.db import Database

REFRESH_TOKEN_BYTES: Final = 32


def generate_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """How a random token is stored: SHA-256 suffices, as a token of 256 random bits cannot be
    found by guessing; the digest only keeps a copy of the database from holding usable tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class RefreshToken:
    """A stored refresh token, in the shape authlib's refresh grant and revocation ask about."""

    id: uuid.UUID
    family_id: uuid.UUID
    client_id: str
    scope: str
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    # The person and session it was issued under, when both are still live.
    user: SignedInUser | None

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_usable(self, now: datetime) -> bool:
        return (
            self.used_at is None
            and self.revoked_at is None
            and self.expires_at > now
            and self.user is not None
        )


class RefreshTokenStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_refresh_token(
        self,
        token: str,
        family_id: uuid.UUID,
        client_id: str,
        scope: str,
        user: SignedInUser,
        now: datetime,
    ) -> None:
        """Store the first token of a family; it expires with the user's session."""
        row = _new_row(token, family_id, None, client_id, scope, user, now)

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(insert(refresh_tokens).values(row))

        await self._database.transaction(work)

    async def find_refresh_token(self, token: str, now: datetime) -> RefreshToken | None:
        """The stored token ``token`` is, whatever its state; None if there is none."""
        live_session = (
            (login_sessions.c.ended_at.is_(None))
            & (login_sessions.c.expires_at > now)
            & (accounts.c.disabled_at.is_(None))
        )
        statement = (
            select(
                refresh_tokens,
                live_session.label("session_is_live"),
                login_sessions.c.created_at.label("session_created_at"),
                login_sessions.c.expires_at.label("session_expires_at"),
                *(column.label(f"person_{column.name}") for column in accounts.c),
            )
            .join(login_sessions, login_sessions.c.id == refresh_tokens.c.session_id)
            .join(accounts, accounts.c.id == refresh_tokens.c.account_id)
            .where(refresh_tokens.c.token_hash == token_digest(token))
        )

        async def work(connection: AsyncConnection) -> RefreshToken | None:
            row = (await connection.execute(statement)).first()
            if row is None:
                return None
            values = row._mapping
            user = None
            if values["session_is_live"]:
                user = SignedInUser(
                    account_from_values(values, prefix="person_"),
                    values["session_id"],
                    values["auth_time"],
                    values["session_expires_at"],
                )
            return RefreshToken(
                id=values["id"],
                family_id=values["family_id"],
                client_id=values["client_id"],
                scope=values["scope"],
                expires_at=values["expires_at"],
                used_at=values["used_at"],
                revoked_at=values["revoked_at"],
                user=user,
            )

        return await self._database.transaction(work)

    async def rotate_refresh_token(
        self, parent: RefreshToken, token: str, scope: str, now: datetime
    ) -> bool:
        """Mark ``parent`` used and store ``token`` as its child, in one transaction.

        False when ``parent`` was used or revoked meanwhile (a concurrent use of the same
        token): that is reuse, so the family is revoked instead and ``token`` never stored.
        """
        assert parent.user is not None
        child = _new_row(
            token, parent.family_id, parent.id, parent.client_id, scope, parent.user, now
        )

        async def work(connection: AsyncConnection) -> bool:
            marked = await connection.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.id == parent.id,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(used_at=now)
                .returning(refresh_tokens.c.id)
            )
            if marked.first() is None:
                await _revoke_family(connection, parent.family_id, now)
                return False
            await connection.execute(insert(refresh_tokens).values(child))
            return True

        return await self._database.transaction(work)

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        """Revoke every token of the family (idempotent)."""
        await self._database.transaction(
            lambda connection: _revoke_family(connection, family_id, now)
        )


async def _revoke_family(connection: AsyncConnection, family_id: uuid.UUID, now: datetime) -> None:
    await connection.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id)
        .values(revoked_at=func.coalesce(refresh_tokens.c.revoked_at, now))
    )


def _new_row(
    token: str,
    family_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    client_id: str,
    scope: str,
    user: SignedInUser,
    now: datetime,
) -> dict[str, object]:
    return {
        "id": uuid6.uuid7(),
        "token_hash": token_digest(token),
        "family_id": family_id,
        "parent_id": parent_id,
        "account_id": user.account.id,
        "client_id": client_id,
        "scope": scope,
        "session_id": user.session_id,
        "auth_time": user.auth_time,
        "created_at": now,
        "expires_at": user.session_expires_at,
    }
