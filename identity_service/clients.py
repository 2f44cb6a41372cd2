"""Registered OAuth clients: what each may do, and how it proves who it is.

Two kinds, fixed at registration:

    web      a confidential web application (the BFF): authorization code + PKCE, refresh
             tokens, OpenID scopes, RP-initiated and back-channel logout
    machine  a bot or service: client credentials only, within its registered scopes

Both authenticate with a secret (``client_secret_basic`` or ``client_secret_post``). Secrets are
generated with 256 bits of randomness and stored as SHA-256 digests: for a secret that cannot be
guessed, a slow hash adds nothing but latency on every token request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import Row, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_service.tables import clients
from servicekit.db import Database

ClientKind = Literal["web", "machine"]
CLIENT_AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post")
WEB_CLIENT_SCOPES: Final = ("openid", "profile", "email", "phone", "offline_access")
_GRANT_TYPES: Final[dict[str, frozenset[str]]] = {
    "web": frozenset({"authorization_code", "refresh_token"}),
    "machine": frozenset({"client_credentials"}),
}
CLIENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DIGEST_PREFIX: Final = "sha256:"  # names the hash, so another can follow
GENERATED_SECRET_BYTES: Final = 32


def hash_client_secret(secret: str) -> str:
    return _DIGEST_PREFIX + hashlib.sha256(secret.encode()).hexdigest()


def generate_client_secret() -> str:
    return secrets.token_urlsafe(GENERATED_SECRET_BYTES)


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]  # authlib is untyped
    """A registered client, in the shape authlib's grants and endpoints ask about."""

    client_id: str
    secret_hash: str = field(repr=False)
    kind: ClientKind
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str | None
    scopes: tuple[str, ...]
    first_party: bool

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        """None: every authorization request must name its redirect_uri (OpenID Core §3.1.2.1)."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to grant: all registered scopes when none is asked for; None (authlib's
        ``invalid_scope``) when the request asks for one the client is not registered for."""
        if not scope:
            return " ".join(self.scopes)
        requested = scope.split()
        if not set(requested) <= set(self.scopes):
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match against the registered URIs (RFC 9700 §4.1.3)."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(hash_client_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return self.kind == "web" and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in _GRANT_TYPES[self.kind]

    @property
    def client_metadata(self) -> dict[str, Any]:
        """The registration metadata authlib's end-session endpoint reads."""
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}


@dataclass(frozen=True)
class NewClient:
    """A client to register; ``secret`` is the plain secret, hashed on the way in."""

    client_id: str
    secret: str = field(repr=False)
    kind: ClientKind
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    scopes: tuple[str, ...] = ()
    first_party: bool = False


class DuplicateClient(Exception):
    """A client with this id is already registered."""


def client_from_row(row: Row[Any]) -> Client:
    """The client in ``row``, which has every column of ``clients``."""
    values = row._mapping
    return Client(
        client_id=values["client_id"],
        secret_hash=values["secret_hash"],
        kind=values["kind"],
        redirect_uris=tuple(values["redirect_uris"]),
        post_logout_redirect_uris=tuple(values["post_logout_redirect_uris"]),
        backchannel_logout_uri=values["backchannel_logout_uri"],
        scopes=tuple(values["scopes"]),
        first_party=values["first_party"],
    )


class ClientStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def get_active_client(self, client_id: str) -> Client | None:
        """The client registered as ``client_id`` unless it is unknown or disabled."""
        if not CLIENT_ID_PATTERN.fullmatch(client_id):
            return None  # cannot be registered; and PostgreSQL text cannot hold every string

        async def work(connection: AsyncConnection) -> Client | None:
            row = (
                await connection.execute(
                    select(*clients.c).where(
                        clients.c.client_id == client_id, clients.c.disabled_at.is_(None)
                    )
                )
            ).first()
            return None if row is None else client_from_row(row)

        return await self._database.transaction(work)

    async def create_client(self, new: NewClient, now: datetime) -> Client:
        """The registered client; ``DuplicateClient`` when the id is taken."""
        try:
            return await self._database.transaction(
                lambda connection: _insert_client(connection, new, now, replace=False)
            )
        except IntegrityError as error:
            raise DuplicateClient(new.client_id) from error

    async def put_client(self, new: NewClient, now: datetime) -> Client:
        """The client registered exactly as ``new`` describes, created or replaced."""
        return await self._database.transaction(
            lambda connection: _insert_client(connection, new, now, replace=True)
        )


async def _insert_client(
    connection: AsyncConnection, new: NewClient, now: datetime, *, replace: bool
) -> Client:
    values = {
        "client_id": new.client_id,
        "secret_hash": hash_client_secret(new.secret),
        "kind": new.kind,
        "redirect_uris": list(new.redirect_uris),
        "post_logout_redirect_uris": list(new.post_logout_redirect_uris),
        "backchannel_logout_uri": new.backchannel_logout_uri,
        "scopes": list(new.scopes),
        "first_party": new.first_party,
        "created_at": now,
    }
    if replace:
        statement = pg_insert(clients).values(values)
        updated = {name: statement.excluded[name] for name in values if name != "created_at"}
        statement = statement.on_conflict_do_update(
            index_elements=[clients.c.client_id], set_={**updated, "disabled_at": None}
        )
        row = (await connection.execute(statement.returning(*clients.c))).one()
    else:
        row = (await connection.execute(insert(clients).values(values).returning(*clients.c))).one()
    return client_from_row(row)
