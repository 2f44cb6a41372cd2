"""Accounts and the people directory in the database.

Each method is one transaction (``Database.transaction`` retries it on serialization failures)
and is named after what it returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import uuid6
from sqlalchemy import ColumnElement, and_, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_service.identifiers import LoginIdentifier
from identity_service.tables import accounts
from servicekit.db import Database


@dataclass(frozen=True)
class Account:
    """A person who can sign in."""

    id: uuid.UUID
    email: str | None
    phone: str | None
    display_name: str
    password_hash: str = field(repr=False)
    email_verified_at: datetime | None
    phone_verified_at: datetime | None
    disabled_at: datetime | None
    created_at: datetime

    def get_user_id(self) -> str:
        """The ``sub`` of this person's tokens (authlib's user protocol)."""
        return str(self.id)


@dataclass(frozen=True)
class NewAccount:
    """An account to create; contact details already normalised, password already hashed."""

    email: str | None
    phone: str | None
    display_name: str
    password_hash: str = field(repr=False)
    email_verified: bool
    phone_verified: bool


class DuplicateAccount(Exception):
    """Another account already has this email address or mobile number."""


def account_from_values(values: Mapping[Any, Any], prefix: str = "") -> Account:
    """The account in a result row that has every column of ``accounts``, each name prefixed
    with ``prefix`` (and perhaps other columns)."""
    return Account(**{column.name: values[prefix + column.name] for column in accounts.c})


class AccountStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_account(self, new: NewAccount, now: datetime) -> Account:
        """The created account; ``DuplicateAccount`` when its email or phone is taken."""
        return await self._database.transaction(
            lambda connection: insert_account(connection, new, now)
        )

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        """The account with ``account_id``, disabled or not."""
        return await self._database.transaction(
            lambda connection: _one_account(connection, accounts.c.id == account_id)
        )

    async def find_account_by_email(self, email: str) -> Account | None:
        return await self._database.transaction(
            lambda connection: _one_account(connection, accounts.c.email == email)
        )

    async def find_account(self, identifier: LoginIdentifier) -> Account | None:
        """The account a sign-in identifier names, disabled or not."""
        column = accounts.c.email if identifier.kind == "email" else accounts.c.phone
        return await self._database.transaction(
            lambda connection: _one_account(connection, column == identifier.value)
        )

    async def disable_account(self, account_id: uuid.UUID, now: datetime) -> bool:
        """Whether the account exists; it is disabled afterwards (idempotent)."""

        async def work(connection: AsyncConnection) -> bool:
            result = await connection.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(disabled_at=func.coalesce(accounts.c.disabled_at, now))
                .returning(accounts.c.id)
            )
            return result.first() is not None

        return await self._database.transaction(work)

    async def search_active_accounts(
        self, query: str, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> list[Account]:
        """Enabled accounts whose name or email contains ``query``, by name, after ``after``.

        ``after`` is the (lower-cased name, id) of the last account of the previous page.
        """
        pattern = "%" + _escape_like(query.lower()) + "%"
        name_key = func.lower(accounts.c.display_name)
        conditions = [
            accounts.c.disabled_at.is_(None),
            or_(
                name_key.like(pattern, escape="\\"),
                accounts.c.email.like(pattern, escape="\\"),
            ),
        ]
        if after is not None:
            conditions.append(tuple_(name_key, accounts.c.id) > tuple_(*after))
        statement = (
            select(*accounts.c)
            .where(and_(*conditions))
            .order_by(name_key, accounts.c.id)
            .limit(limit)
        )

        async def work(connection: AsyncConnection) -> list[Account]:
            return [
                account_from_values(row._mapping) for row in await connection.execute(statement)
            ]

        return await self._database.transaction(work)


async def insert_account(connection: AsyncConnection, new: NewAccount, now: datetime) -> Account:
    """Insert ``new`` in the caller's transaction; ``DuplicateAccount`` when its email or phone
    is taken (the transaction is then aborted)."""
    statement = (
        insert(accounts)
        .values(
            id=uuid6.uuid7(),
            email=new.email,
            phone=new.phone,
            display_name=new.display_name,
            password_hash=new.password_hash,
            email_verified_at=now if new.email and new.email_verified else None,
            phone_verified_at=now if new.phone and new.phone_verified else None,
            created_at=now,
        )
        .returning(*accounts.c)
    )
    try:
        row = (await connection.execute(statement)).one()
    except IntegrityError as error:
        raise DuplicateAccount from error
    return account_from_values(row._mapping)


async def _one_account(
    connection: AsyncConnection, condition: ColumnElement[bool]
) -> Account | None:
    row = (await connection.execute(select(*accounts.c).where(condition))).first()
    return None if row is None else account_from_values(row._mapping)


def _escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards escaped, so a search for "50%" means the characters."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
