"""The tokens of mailed links: email verification and password reset.

Revision ID: 0002
Revises: 0001

Kept in the database rather than in Redis with a TTL: using a reset token must commit together
with the new password and the revoked sessions, and a verification token together with the
verified address, which only a transaction on the same database can promise. Expiry is a column
checked on use; expired rows are deleted when the same account is sent a new link.
The table is created in the revision's transaction, its indexes outside it (see 0001).
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = """
CREATE TABLE IF NOT EXISTS identity.account_tokens (
    id uuid PRIMARY KEY,
    token_hash text NOT NULL,
    purpose text NOT NULL
        CONSTRAINT account_tokens_purpose CHECK (purpose IN ('verify_email', 'reset_password')),
    account_id uuid NOT NULL REFERENCES identity.accounts (id),
    email text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
)
"""

INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS account_tokens_token_hash_key"
    " ON identity.account_tokens (token_hash)",
    "CREATE INDEX IF NOT EXISTS account_tokens_by_account ON identity.account_tokens (account_id)",
)


def upgrade() -> None:
    op.execute(TABLE)
    with op.get_context().autocommit_block():
        for statement in INDEXES:
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS identity.account_tokens")
