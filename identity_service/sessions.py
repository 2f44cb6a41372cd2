"""Sign-in sessions at the provider, and what ending one takes down with it.

A browser that signs in gets a session (its id is the ``sid`` of the tokens issued under it) and
a cookie naming it. The session records which clients received tokens under it; ending it marks
it ended, revokes every refresh token issued under it, and returns the clients to be told over
back-channel logout.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import uuid6
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_service.clients import Client, client_from_row
from identity_service.store import Account, account_from_values
from identity_service.tables import (
    accounts,
    clients,
    login_session_clients,
    login_sessions,
    refresh_tokens,
)
from servicekit.db import Database

# RFC 8176 authentication method of every sign-in here: a password.
PASSWORD_AMR: Final = ("pwd",)


@dataclass(frozen=True)
class SignedInUser:
    """A person as signed in under one session: the user authlib's grants work with."""

    account: Account
    session_id: uuid.UUID
    auth_time: datetime
    session_expires_at: datetime

    def get_user_id(self) -> str:
        return self.account.get_user_id()


@dataclass(frozen=True)
class EndedSession:
    """A session that has just ended: whose it was and which clients to notify."""

    session_id: uuid.UUID
    account_id: uuid.UUID
    clients_to_notify: tuple[Client, ...]


class LoginSessionStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_session(
        self, account: Account, now: datetime, expires_at: datetime
    ) -> SignedInUser:
        """A new session for ``account`` (a new id at every sign-in: no session fixation)."""
        session_id = uuid6.uuid7()

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(
                insert(login_sessions).values(
                    id=session_id, account_id=account.id, created_at=now, expires_at=expires_at
                )
            )

        await self._database.transaction(work)
        return SignedInUser(account, session_id, now, expires_at)

    async def get_signed_in_user(self, session_id: uuid.UUID, now: datetime) -> SignedInUser | None:
        """The person signed in under ``session_id``, if the session is live and the account is
        enabled."""
        statement = (
            select(
                login_sessions.c.created_at.label("auth_time"),
                login_sessions.c.expires_at.label("session_expires_at"),
                *accounts.c,
            )
            .join(accounts, accounts.c.id == login_sessions.c.account_id)
            .where(
                login_sessions.c.id == session_id,
                login_sessions.c.ended_at.is_(None),
                login_sessions.c.expires_at > now,
                accounts.c.disabled_at.is_(None),
            )
        )

        async def work(connection: AsyncConnection) -> SignedInUser | None:
            row = (await connection.execute(statement)).first()
            if row is None:
                return None
            return SignedInUser(
                account_from_values(row._mapping), session_id, row.auth_time, row.session_expires_at
            )

        return await self._database.transaction(work)

    async def record_client(self, session_id: uuid.UUID, client_id: str, now: datetime) -> None:
        """Note that ``client_id`` received tokens under the session (idempotent)."""
        statement = (
            pg_insert(login_session_clients)
            .values(session_id=session_id, client_id=client_id, created_at=now)
            .on_conflict_do_nothing()
        )

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(statement)

        await self._database.transaction(work)

    async def end_session(self, session_id: uuid.UUID, now: datetime) -> EndedSession | None:
        """End the session and revoke its refresh tokens; None when it had already ended."""
        return await self._database.transaction(
            lambda connection: end_session_on(connection, session_id, now)
        )


async def end_session_on(
    connection: AsyncConnection, session_id: uuid.UUID, now: datetime
) -> EndedSession | None:
    """``LoginSessionStore.end_session`` inside the caller's transaction."""
    ended = (
        await connection.execute(
            update(login_sessions)
            .where(login_sessions.c.id == session_id, login_sessions.c.ended_at.is_(None))
            .values(ended_at=now)
            .returning(login_sessions.c.account_id)
        )
    ).first()
    if ended is None:
        return None
    await connection.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.session_id == session_id)
        .values(revoked_at=func.coalesce(refresh_tokens.c.revoked_at, now))
    )
    rows = await connection.execute(
        select(*clients.c)
        .join(login_session_clients, login_session_clients.c.client_id == clients.c.client_id)
        .where(
            login_session_clients.c.session_id == session_id,
            clients.c.backchannel_logout_uri.is_not(None),
            clients.c.disabled_at.is_(None),
        )
    )
    return EndedSession(session_id, ended.account_id, tuple(client_from_row(row) for row in rows))


async def end_account_sessions_on(
    connection: AsyncConnection, account_id: uuid.UUID, now: datetime
) -> list[EndedSession]:
    """End every live session of the account (revoking every usable refresh token it has), in
    the caller's transaction; the sessions ended, for back-channel logout."""
    live = await connection.execute(
        select(login_sessions.c.id).where(
            login_sessions.c.account_id == account_id,
            login_sessions.c.ended_at.is_(None),
            login_sessions.c.expires_at > now,
        )
    )
    session_ids = list(live.scalars())
    ended = [await end_session_on(connection, session_id, now) for session_id in session_ids]
    return [session for session in ended if session is not None]
