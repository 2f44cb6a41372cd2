"""Operator tasks behind ``parley user``, ``parley client`` and ``parley keys``.

Each takes the database URL and runs one task against identity_service's tables, applying the
same rules the service does (``service.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from identity_service.clients import (
    WEB_CLIENT_SCOPES,
    Client,
    ClientKind,
    ClientStore,
    NewClient,
    generate_client_secret,
)
from identity_service.clock import utc_now
from identity_service.identifiers import InvalidIdentifier, normalise_email
from identity_service.keys import SigningKeys
from identity_service.passwords import Passwords, generate_password
from identity_service.service import create_account, register_client
from identity_service.store import Account, AccountStore
from servicekit.db import Database


@asynccontextmanager
async def open_database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=1)
    try:
        yield database
    finally:
        await database.close()


@dataclass(frozen=True)
class CreatedUser:
    account: Account
    generated_password: str | None  # set when none was given: shown once, stored only hashed


async def create_user(
    database_url: str,
    *,
    email: str | None,
    phone: str | None,
    display_name: str,
    password: str | None,
) -> CreatedUser:
    """A new account whose contact details count as verified (the operator vouches for them)."""
    generated = None if password else generate_password()
    async with open_database(database_url) as database:
        account = await create_account(
            AccountStore(database),
            Passwords("standard"),
            email=email,
            phone=phone,
            display_name=display_name,
            password=password or generated or "",
            verified=True,
            now=utc_now(),
        )
    return CreatedUser(account, generated)


async def disable_user(database_url: str, email_or_id: str) -> Account | None:
    """The disabled account, or None when no account has that email address or id.

    A disabled account cannot sign in, its sessions stop working and its refresh tokens are
    refused; access tokens already issued expire within their short lifetime.
    """
    async with open_database(database_url) as database:
        accounts = AccountStore(database)
        account = await _find_account(accounts, email_or_id)
        if account is None:
            return None
        await accounts.disable_account(account.id, utc_now())
        return await accounts.get_account(account.id)


async def _find_account(accounts: AccountStore, email_or_id: str) -> Account | None:
    try:
        return await accounts.get_account(uuid.UUID(email_or_id))
    except ValueError:
        pass
    try:
        return await accounts.find_account_by_email(normalise_email(email_or_id))
    except InvalidIdentifier:
        return None


@dataclass(frozen=True)
class CreatedClient:
    client: Client
    secret: str  # shown once; stored only as a digest


async def create_client(
    database_url: str,
    *,
    client_id: str,
    kind: ClientKind,
    redirect_uris: Sequence[str] = (),
    post_logout_redirect_uris: Sequence[str] = (),
    backchannel_logout_uri: str | None = None,
    scopes: Sequence[str] = (),
    first_party: bool = False,
) -> CreatedClient:
    """A new client with a generated secret. Web clients get the OpenID scopes."""
    secret = generate_client_secret()
    new = NewClient(
        client_id=client_id,
        secret=secret,
        kind=kind,
        redirect_uris=tuple(redirect_uris),
        post_logout_redirect_uris=tuple(post_logout_redirect_uris),
        backchannel_logout_uri=backchannel_logout_uri,
        scopes=WEB_CLIENT_SCOPES if kind == "web" else tuple(scopes),
        first_party=first_party,
    )
    async with open_database(database_url) as database:
        client = await register_client(ClientStore(database), new, utc_now())
    return CreatedClient(client, secret)


async def rotate_signing_key(database_url: str) -> str:
    """Make a new signing key current; the kid. The old key stays published until the tokens
    it signed have expired."""
    async with open_database(database_url) as database:
        # Publication is the service's business; rotation needs no token lifetimes.
        return await SigningKeys(database, max_token_lifetime_seconds=0).rotate(utc_now())
