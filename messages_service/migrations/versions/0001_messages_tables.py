"""Messages, their per-conversation counters, mentions, reactions, pointers and the outbox.

Revision ID: 0001
Revises:

Tables are created inside the revision's transaction; indexes outside it (BRIEF §7). Every
statement is idempotent, so an interrupted revision can simply be run again. On YugabyteDB each
per-conversation table is hash-sharded on ``conversation_id`` with its ordered columns as range
columns (messages newest first: ``seq DESC``); on PostgreSQL they are plain B-trees. Indexes that
serve ordered scans say ``ASC``: YugabyteDB would otherwise hash-shard them.
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
        CREATE TABLE IF NOT EXISTS messages.conversation_state (
            conversation_id uuid NOT NULL,
            last_seq bigint NOT NULL DEFAULT 0,
            last_position bigint NOT NULL DEFAULT 0,
            last_message_at timestamptz,
            purged_through_seq bigint NOT NULL DEFAULT 0,
            activity_pending boolean NOT NULL DEFAULT false,
            {key(("conversation_id",))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS messages.messages (
            conversation_id uuid NOT NULL,
            seq bigint NOT NULL CONSTRAINT messages_seq_positive CHECK (seq > 0),
            id uuid NOT NULL,
            sender_id text NOT NULL,
            client_msg_id text NOT NULL,
            body text,
            reply_to uuid,
            created_at timestamptz NOT NULL,
            edited_at timestamptz,
            deleted_at timestamptz,
            CONSTRAINT messages_body_or_deleted CHECK ((body IS NULL) = (deleted_at IS NOT NULL)),
            {key(("conversation_id",), ("seq DESC",))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS messages.mentions (
            conversation_id uuid NOT NULL,
            seq bigint NOT NULL,
            user_id text NOT NULL,
            {key(("conversation_id",), ("seq", "user_id"))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS messages.reactions (
            conversation_id uuid NOT NULL,
            seq bigint NOT NULL,
            emoji text NOT NULL,
            user_id text NOT NULL,
            created_at timestamptz NOT NULL,
            {key(("conversation_id",), ("seq", "emoji", "user_id"))}
        )
        """,
        f"""
        CREATE TABLE IF NOT EXISTS messages.member_pointers (
            conversation_id uuid NOT NULL,
            user_id text NOT NULL,
            read_seq bigint NOT NULL DEFAULT 0,
            delivered_seq bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL,
            {key(("conversation_id",), ("user_id",))}
        )
        """,
        outbox_table_ddl("messages", yugabyte=yugabyte),
    ]


INDEXES = (
    # Messages are addressed by id (edit, delete, reactions, reply_to).
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_id_key ON messages.messages (id)",
    # Idempotent sends: one message per (conversation, sender, client_msg_id).
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_client_msg_id_key"
    " ON messages.messages (conversation_id, sender_id, client_msg_id)",
    # Retention walks the oldest messages first; the tie-breakers keep each batch a seq prefix.
    "CREATE INDEX IF NOT EXISTS messages_by_created_at"
    " ON messages.messages (created_at ASC, conversation_id ASC, seq ASC)",
    # Unread counts subtract the tombstones above a read pointer: only deleted rows are indexed.
    "CREATE INDEX IF NOT EXISTS messages_tombstones"
    " ON messages.messages (conversation_id, seq ASC) WHERE deleted_at IS NOT NULL",
    # Mention counts: one person's mentions in a conversation above their read pointer.
    "CREATE INDEX IF NOT EXISTS mentions_by_user"
    " ON messages.mentions (user_id, conversation_id, seq ASC)",
    # The activity reporter's work list.
    "CREATE INDEX IF NOT EXISTS conversation_state_activity_pending"
    " ON messages.conversation_state (conversation_id) WHERE activity_pending",
)


def upgrade() -> None:
    for statement in _tables(is_yugabyte(op.get_bind())):
        op.execute(statement)
    with op.get_context().autocommit_block():
        for statement in INDEXES:
            op.execute(statement)


def downgrade() -> None:
    for table in (
        "outbox",
        "member_pointers",
        "reactions",
        "mentions",
        "messages",
        "conversation_state",
    ):
        op.execute(f"DROP TABLE IF EXISTS messages.{table}")
