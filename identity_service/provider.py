"""Everything the provider's endpoints work with, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from identity_service.account_tokens import AccountTokenStore
from identity_service.clients import ClientStore
from identity_service.codes import AuthorizationCodes, PendingAuthorizations
from identity_service.keys import SigningKeys
from identity_service.passwords import Passwords
from identity_service.refresh_tokens import RefreshTokenStore
from identity_service.sessions import LoginSessionStore
from identity_service.settings import IdentitySettings
from identity_service.store import AccountStore
from servicekit.db import Database


@dataclass(frozen=True)
class Provider:
    settings: IdentitySettings
    accounts: AccountStore
    account_tokens: AccountTokenStore
    clients: ClientStore
    sessions: LoginSessionStore
    refresh_tokens: RefreshTokenStore
    codes: AuthorizationCodes
    pending: PendingAuthorizations
    keys: SigningKeys
    passwords: Passwords

    @property
    def issuer(self) -> str:
        return self.settings.oidc_issuer


def build_provider(settings: IdentitySettings, database: Database, client: redis.Redis) -> Provider:
    namespace = settings.redis_namespace
    return Provider(
        settings=settings,
        accounts=AccountStore(database),
        account_tokens=AccountTokenStore(database),
        clients=ClientStore(database),
        sessions=LoginSessionStore(database),
        refresh_tokens=RefreshTokenStore(database),
        codes=AuthorizationCodes(client, namespace),
        pending=PendingAuthorizations(client, namespace),
        keys=SigningKeys(database, settings.max_token_lifetime_seconds),
        passwords=Passwords(settings.password_hash_profile),
    )
