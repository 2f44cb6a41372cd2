"""Conversations, members, direct pairs, invitations, known principals and the event outbox.

Revision ID: 0001
Revises:

Tables are created inside the revision's transaction; indexes outside it (BRIEF §7). Every
statement is idempotent, so an interrupted revision can simply be run again. On YugabyteDB the
per-conversation and per-user keys are hash-sharded on their first column, with the ordered
columns as range columns; on PostgreSQL they are plain B-trees.
"""

from __future__ import annotations

from alembic import op

from servicekit.migrations import is_yugabyte, primary_key_clause
from servicekit.outbox import outbox_table_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables(yugabyte: bool) -> list[str]:
    def key(hashed: tuple[str, ...], ranged: tuple[str, ...] = ()) -> str:
        return primary_key_clause(hashed, ranged, yugabyte=yugabyte)

    return [
        f"""
        CREATE TABLE IF NOT EXISTS conversations.conversations (
            id uuid NOT NULL,
            kind text NOT NULL CONSTRAINT conversations_kind CHECK (kind IN ('direct', 'group')),
            title text,
            description text,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            revision bigint NOT NULL,
            last_seq bigint,
            last_activity_at timestamptz NOT NULL,
            deleted_at timestamptz,
            {key(("id",))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS conversations.members (
            conversation_id uuid NOT NULL,
            user_id text NOT NULL,
            role text NOT NULL CONSTRAINT members_role CHECK (role IN ('owner', 'admin', 'member')),
            added_by text NOT NULL,
            joined_at timestamptz NOT NULL,
            last_activity_at timestamptz NOT NULL,
            {key(("conversation_id",), ("user_id",))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS conversations.direct_pairs (
            low_id text NOT NULL,
            high_id text NOT NULL,
            conversation_id uuid NOT NULL,
            {key(("low_id", "high_id"))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS conversations.invitations (
            id uuid NOT NULL,
            conversation_id uuid NOT NULL,
            invitee_id text NOT NULL,
            inviter_id text NOT NULL,
            state text NOT NULL CONSTRAINT invitations_state
                CHECK (state IN ('pending', 'accepted', 'declined', 'revoked', 'expired')),
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            responded_at timestamptz,
            {key(("id",))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS conversations.principals (
            id text NOT NULL,
            kind text NOT NULL CONSTRAINT principals_kind CHECK (kind IN ('user', 'machine')),
            first_seen_at timestamptz NOT NULL,
            {key(("id",))}
        )
        """,
        outbox_table_ddl("conversations", yugabyte=yugabyte),
    ]


def _indexes(yugabyte: bool) -> list[str]:
    # The column a lookup is by: hash-sharded on YugabyteDB, the start of a B-tree elsewhere.
    by = "HASH" if yugabyte else "ASC"
    return [
        # A person's conversations, most recent activity first (GET /api/conversations, and
        # GET /internal/users/{id}/conversations).
        "CREATE INDEX IF NOT EXISTS members_by_user ON conversations.members"
        f" (user_id {by}, last_activity_at DESC, conversation_id DESC)",
        # A person's pending invitations, newest first (ids are UUIDv7: creation order).
        "CREATE INDEX IF NOT EXISTS invitations_pending_by_invitee ON conversations.invitations"
        f" (invitee_id {by}, id DESC) WHERE state = 'pending'",
        # A group's pending invitations, newest first.
        "CREATE INDEX IF NOT EXISTS invitations_pending_by_conversation"
        f" ON conversations.invitations (conversation_id {by}, id DESC) WHERE state = 'pending'",
        # At most one pending invitation per conversation and invitee.
        "CREATE UNIQUE INDEX IF NOT EXISTS invitations_one_pending"
        f" ON conversations.invitations (conversation_id {by}, invitee_id ASC)"
        " WHERE state = 'pending'",
    ]


def upgrade() -> None:
    yugabyte = is_yugabyte(op.get_bind())
    for statement in _tables(yugabyte):
        op.execute(statement)
    with op.get_context().autocommit_block():
        for statement in _indexes(yugabyte):
            op.execute(statement)


def downgrade() -> None:
    for table in ("outbox", "principals", "invitations", "direct_pairs", "members"):
        op.execute(f"DROP TABLE IF EXISTS conversations.{table}")
    op.execute("DROP TABLE IF EXISTS conversations.conversations")
