"""The tokens of mailed links, and what using one does, each in one transaction.

A link carries a random token (256 bits); the database holds only its digest, with its purpose,
its account, the address it was mailed to and when it expires. Using a token marks it used in
the same transaction as its effect, so a link works once even when two clicks race, and a
transaction retried after a serialization failure repeats the whole of it or none.
"""

from __future__ import annotations

import enum
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import uuid6
from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_service.refresh_tokens import token_digest
from identity_service.sessions import EndedSession, end_account_sessions_on
from identity_service.store import Account, NewAccount, account_from_values, insert_account
from identity_service.tables import account_tokens, accounts
from servicekit.db import Database

ACCOUNT_TOKEN_BYTES: Final = 32  # 256 bits, 43 URL-safe characters
# Anything else in a link is not one of ours: refused before the database is asked.
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
VERIFY_EMAIL: Final = "verify_email"
RESET_PASSWORD: Final = "reset_password"  # noqa: S105 - a purpose, not a password
# A day, so a person who registers in the evening can verify the next morning.
EMAIL_VERIFICATION_HOURS: Final = 24
# An hour: a reset link grants the account, so it should not lie usable in a mailbox for long.
PASSWORD_RESET_HOURS: Final = 1


def generate_account_token() -> str:
    return secrets.token_urlsafe(ACCOUNT_TOKEN_BYTES)


def is_account_token(text: str) -> bool:
    return _TOKEN_SHAPE.fullmatch(text) is not None


class Verification(enum.Enum):
    """What following a verification link did."""

    VERIFIED = "verified"
    ALREADY_VERIFIED = "already verified"  # the link had been used: a second click, say
    EXPIRED = "expired"
    INVALID = "invalid"  # not a link this provider sent


@dataclass(frozen=True)
class PasswordChanged:
    account: Account
    ended_sessions: list[EndedSession]


class AccountTokenStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_registered_account(
        self, new: NewAccount, token: str | None, now: datetime
    ) -> Account:
        """The created account and, when ``token`` is given, its email verification token,
        in one transaction; ``DuplicateAccount`` when its email or phone is taken."""

        async def work(connection: AsyncConnection) -> Account:
            account = await insert_account(connection, new, now)
            if token is not None and account.email is not None:
                await _insert_token(connection, token, VERIFY_EMAIL, account, now)
            return account

        return await self._database.transaction(work)

    async def create_reset_token(self, account: Account, token: str, now: datetime) -> None:
        """Store a password reset token for ``account`` (which has an email address), and
        forget the account's expired tokens."""

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(
                delete(account_tokens).where(
                    account_tokens.c.account_id == account.id,
                    account_tokens.c.expires_at <= now,
                )
            )
            await _insert_token(connection, token, RESET_PASSWORD, account, now)

        await self._database.transaction(work)

    async def verify_email(self, token: str, now: datetime) -> Verification:
        """Use a verification token: its address becomes verified (idempotent on replay)."""
        if not is_account_token(token):
            return Verification.INVALID

        async def work(connection: AsyncConnection) -> Verification:
            used = await _use_token(connection, token, VERIFY_EMAIL, now)
            if used is None:
                return await _unusable_token_state(connection, token, VERIFY_EMAIL)
            account_id, email = used
            await _mark_email_verified(connection, account_id, email, now)
            return Verification.VERIFIED

        return await self._database.transaction(work)

    async def get_reset_account(self, token: str, now: datetime) -> Account | None:
        """The enabled account a usable (unused, unexpired) reset token is for."""
        if not is_account_token(token):
            return None
        statement = (
            select(*accounts.c)
            .join(account_tokens, account_tokens.c.account_id == accounts.c.id)
            .where(*_usable(token, RESET_PASSWORD, now), accounts.c.disabled_at.is_(None))
        )

        async def work(connection: AsyncConnection) -> Account | None:
            row = (await connection.execute(statement)).first()
            return None if row is None else account_from_values(row._mapping)

        return await self._database.transaction(work)

    async def reset_password(
        self, token: str, password_hash: str, now: datetime
    ) -> PasswordChanged | None:
        """Use a reset token: the account gets ``password_hash``, every sign-in session of it
        ends (its refresh tokens revoked), every other reset link of it dies, and the address
        the link was mailed to counts as verified. None when the token is not usable."""
        if not is_account_token(token):
            return None

        async def work(connection: AsyncConnection) -> PasswordChanged | None:
            used = await _use_token(connection, token, RESET_PASSWORD, now)
            if used is None:
                return None
            account_id, email = used
            await connection.execute(
                update(account_tokens)
                .where(
                    account_tokens.c.account_id == account_id,
                    account_tokens.c.purpose == RESET_PASSWORD,
                    account_tokens.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
            await _mark_email_verified(connection, account_id, email, now)
            row = (
                await connection.execute(
                    update(accounts)
                    .where(accounts.c.id == account_id, accounts.c.disabled_at.is_(None))
                    .values(password_hash=password_hash)
                    .returning(*accounts.c)
                )
            ).first()
            if row is None:  # disabled meanwhile: roll back, the token stays unused
                raise _AccountDisabled
            ended = await end_account_sessions_on(connection, account_id, now)
            return PasswordChanged(account_from_values(row._mapping), ended)

        try:
            return await self._database.transaction(work)
        except _AccountDisabled:
            return None


class _AccountDisabled(Exception):
    """Raised inside a transaction to abort it."""


def _usable(token: str, purpose: str, now: datetime) -> list[ColumnElement[bool]]:
    return [
        account_tokens.c.token_hash == token_digest(token),
        account_tokens.c.purpose == purpose,
        account_tokens.c.used_at.is_(None),
        account_tokens.c.expires_at > now,
    ]


async def _insert_token(
    connection: AsyncConnection, token: str, purpose: str, account: Account, now: datetime
) -> None:
    assert account.email is not None
    hours = EMAIL_VERIFICATION_HOURS if purpose == VERIFY_EMAIL else PASSWORD_RESET_HOURS
    await connection.execute(
        insert(account_tokens).values(
            id=uuid6.uuid7(),
            token_hash=token_digest(token),
            purpose=purpose,
            account_id=account.id,
            email=account.email,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )


async def _use_token(
    connection: AsyncConnection, token: str, purpose: str, now: datetime
) -> tuple[uuid.UUID, str] | None:
    """Mark a usable token used; its (account id, email), or None when it was not usable."""
    row = (
        await connection.execute(
            update(account_tokens)
            .where(*_usable(token, purpose, now))
            .values(used_at=now)
            .returning(account_tokens.c.account_id, account_tokens.c.email)
        )
    ).first()
    return None if row is None else (row.account_id, row.email)


async def _unusable_token_state(
    connection: AsyncConnection, token: str, purpose: str
) -> Verification:
    """Why a token could not be used: used before, expired, or never ours."""
    row = (
        await connection.execute(
            select(account_tokens.c.used_at, account_tokens.c.expires_at).where(
                account_tokens.c.token_hash == token_digest(token),
                account_tokens.c.purpose == purpose,
            )
        )
    ).first()
    if row is None:
        return Verification.INVALID
    return Verification.ALREADY_VERIFIED if row.used_at is not None else Verification.EXPIRED


async def _mark_email_verified(
    connection: AsyncConnection, account_id: uuid.UUID, email: str, now: datetime
) -> None:
    """The address is verified if the account still has it (idempotent)."""
    await connection.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.email == email)
        .values(email_verified_at=func.coalesce(accounts.c.email_verified_at, now))
    )
