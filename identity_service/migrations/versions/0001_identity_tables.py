"""Accounts, clients, signing keys, sign-in sessions and refresh tokens.

Revision ID: 0001
Revises:

Tables are created inside the revision's transaction; indexes outside it (BRIEF §7: YugabyteDB
builds indexes online and must not do so inside a transaction block). Every statement is
idempotent, so a revision interrupted between the two parts can simply be run again. Indexes that
serve ordered scans say ``ASC``: YugabyteDB would otherwise hash-shard them.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    """
    CREATE TABLE IF NOT EXISTS identity.accounts (
        id uuid PRIMARY KEY,
        email text,
        phone text,
        display_name text NOT NULL,
        password_hash text NOT NULL,
        email_verified_at timestamptz,
        phone_verified_at timestamptz,
        disabled_at timestamptz,
        created_at timestamptz NOT NULL,
        CONSTRAINT accounts_email_or_phone CHECK (email IS NOT NULL OR phone IS NOT NULL),
        CONSTRAINT accounts_display_name_length CHECK (char_length(display_name) BETWEEN 1 AND 100)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS identity.clients (
        client_id text PRIMARY KEY,
        secret_hash text NOT NULL,
        kind text NOT NULL CONSTRAINT clients_kind CHECK (kind IN ('web', 'machine')),
        redirect_uris text[] NOT NULL DEFAULT '{}',
        post_logout_redirect_uris text[] NOT NULL DEFAULT '{}',
        backchannel_logout_uri text,
        scopes text[] NOT NULL DEFAULT '{}',
        first_party boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        disabled_at timestamptz
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS identity.signing_keys (
        kid text PRIMARY KEY,
        alg text NOT NULL,
        private_jwk jsonb NOT NULL,
        public_jwk jsonb NOT NULL,
        created_at timestamptz NOT NULL,
        retired_at timestamptz
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS identity.login_sessions (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES identity.accounts (id),
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        ended_at timestamptz
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS identity.login_session_clients (
        session_id uuid NOT NULL REFERENCES identity.login_sessions (id),
        client_id text NOT NULL REFERENCES identity.clients (client_id),
        created_at timestamptz NOT NULL,
        PRIMARY KEY (session_id, client_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS identity.refresh_tokens (
        id uuid PRIMARY KEY,
        token_hash text NOT NULL,
        family_id uuid NOT NULL,
        parent_id uuid,
        account_id uuid NOT NULL REFERENCES identity.accounts (id),
        client_id text NOT NULL REFERENCES identity.clients (client_id),
        scope text NOT NULL,
        session_id uuid NOT NULL REFERENCES identity.login_sessions (id),
        auth_time timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        revoked_at timestamptz
    )
    """,
)

INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS accounts_email_key ON identity.accounts (email)",
    "CREATE UNIQUE INDEX IF NOT EXISTS accounts_phone_key ON identity.accounts (phone)",
    # The directory lists people by name; keyset pagination walks this index.
    "CREATE INDEX IF NOT EXISTS accounts_by_name"
    " ON identity.accounts (lower(display_name) ASC, id ASC)",
    "CREATE UNIQUE INDEX IF NOT EXISTS refresh_tokens_token_hash_key"
    " ON identity.refresh_tokens (token_hash)",
    "CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON identity.refresh_tokens (family_id)",
    "CREATE INDEX IF NOT EXISTS refresh_tokens_by_session ON identity.refresh_tokens (session_id)",
    "CREATE INDEX IF NOT EXISTS login_sessions_by_account ON identity.login_sessions (account_id)",
)


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)
    with op.get_context().autocommit_block():
        for statement in INDEXES:
            op.execute(statement)


def downgrade() -> None:
    for table in (
        "refresh_tokens",
        "login_session_clients",
        "login_sessions",
        "signing_keys",
        "clients",
        "accounts",
    ):
        op.execute(f"DROP TABLE IF EXISTS identity.{table}")
