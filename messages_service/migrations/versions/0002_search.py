"""Full-text search entries: one per live message, with a tsvector and a folded copy of its text.

Revision ID: 0002
Revises: 0001

``search_entries`` is keyed like ``messages`` ((conversation_id, seq); hash-sharded on
``conversation_id`` on YugabyteDB) and written in the same transactions (see search.py).
Two GIN indexes serve the two ways a message matches (BRIEF §7: GIN, never GiST; YugabyteDB maps
GIN to ybgin, which supports both opclasses):

- ``document`` (``to_tsvector('simple', folded_body)``): word search for languages that put spaces
  between words. The 'simple' configuration neither stems nor drops stop words, so every language
  is searched the same way and a word is found as it was typed.
- ``folded_body gin_trgm_ops`` (pg_trgm): substring search, for languages written without spaces
  (Chinese, Japanese, Thai), for parts of words and for emoji.

The table is created inside the revision's transaction; the extension and indexes outside it.
Every statement is idempotent, so an interrupted revision can simply be run again.

pg_trgm ships with PostgreSQL's contrib modules and with YugabyteDB, but a server built without
them (the embedded development server, for one) does not offer it. Then the trigram index is left
out and substring search still works, by reading the entries of the caller's conversations; once
the extension is installed, running this revision's statements again (``CREATE EXTENSION pg_trgm``
and the index) adds it.
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text

from servicekit.migrations import is_yugabyte, primary_key_clause

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _table(yugabyte: bool) -> str:
    key = primary_key_clause(("conversation_id",), ("seq DESC",), yugabyte=yugabyte)
    return f"""
    CREATE TABLE IF NOT EXISTS messages.search_entries (
        conversation_id uuid NOT NULL,
        seq bigint NOT NULL,
        message_id uuid NOT NULL,
        created_at timestamptz NOT NULL,
        folded_body text NOT NULL,
        document tsvector NOT NULL,
        {key}
    )
    """


logger = logging.getLogger("messages_service.migrations")

DOCUMENT_INDEX = (
    "CREATE INDEX IF NOT EXISTS search_entries_document"
    " ON messages.search_entries USING gin (document)"
)
TRIGRAM_STATEMENTS = (
    # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS search_entries_folded_body"
    " ON messages.search_entries USING gin (folded_body gin_trgm_ops)",
)


def upgrade() -> None:
    connection = op.get_bind()
    op.execute(_table(is_yugabyte(connection)))
    with op.get_context().autocommit_block():
        op.execute(DOCUMENT_INDEX)
        available = connection.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        ).first()
        if available is None:
            logger.warning("pg_trgm is not available: substring search runs without its index")
            return
        for statement in TRIGRAM_STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    # pg_trgm stays: other schemas of the same database may use it.
    op.execute("DROP TABLE IF EXISTS messages.search_entries")
