"""identity_service's tables, all in the ``identity`` schema (created by its migrations).

Secrets are never stored as given: passwords as argon2id hashes, client secrets, refresh tokens
and the tokens of mailed links as SHA-256 digests (all long random strings, so a fast hash is
enough).
Authorization codes and half-finished sign-ins live in Redis, not here (see ``codes.py``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(schema="identity")

# A person. Email and phone are each unique and normalised (lower-case address, E.164 number);
# at least one is present. The *_verified_at columns are set when the person proves control of
# the address (an operator-created account counts as proven).
accounts = Table(
    "accounts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", Text),
    Column("phone", Text),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("email_verified_at", DateTime(timezone=True)),
    Column("phone_verified_at", DateTime(timezone=True)),
    Column("disabled_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A registered OAuth client: a confidential web application (authorization code) or a machine
# client (client credentials).
clients = Table(
    "clients",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("secret_hash", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("redirect_uris", ARRAY(Text), nullable=False),
    Column("post_logout_redirect_uris", ARRAY(Text), nullable=False),
    Column("backchannel_logout_uri", Text),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("first_party", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
)

# Token signing keys. The newest key without retired_at signs; a retired key stays published
# until every token it signed has expired.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("alg", Text, nullable=False),
    Column("private_jwk", JSONB, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
)

# A browser's sign-in at the provider; its id is the ``sid`` of every token issued under it.
login_sessions = Table(
    "login_sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)

# Which clients received tokens under a sign-in: they are sent back-channel logout tokens
# when it ends.
login_session_clients = Table(
    "login_session_clients",
    metadata,
    Column("session_id", Uuid, primary_key=True),
    Column("client_id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Refresh tokens. Each use rotates the token: the used one gets used_at and a child in the same
# family. Presenting a used (or revoked) token again revokes the whole family.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("token_hash", Text, nullable=False),
    Column("family_id", Uuid, nullable=False),
    Column("parent_id", Uuid),
    Column("account_id", Uuid, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("session_id", Uuid, nullable=False),
    Column("auth_time", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# The tokens of links mailed to people: "verify_email" (lives 24 hours) proves control of the
# address it was sent to; "reset_password" (1 hour) lets its holder choose a new password. Each
# works once: using it sets used_at in the same transaction as what it does.
account_tokens = Table(
    "account_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("token_hash", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("account_id", Uuid, nullable=False),
    # The address the link was sent to: only that address counts as verified by it.
    Column("email", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)
