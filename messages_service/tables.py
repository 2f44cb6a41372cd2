"""messages_service's tables, all in the ``messages`` schema (created by its migrations).

    conversation_state   one row per conversation that has had a message: the seq counter, the
                         event position counter, the retention floor, the activity flag
    messages             keyed (conversation_id, seq); tombstones keep their row, body NULL
    mentions             (conversation_id, seq, user_id): who a live message mentions
    reactions            (conversation_id, seq, emoji, user_id): one per person per emoji
    member_pointers      (conversation_id, user_id): read and delivery pointers
    outbox               events written with the change they describe (servicekit.outbox)

Nothing here is a foreign key to another service's table (BRIEF §2): conversations and people
are ids that conversations_service and the identity provider own.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, Table, Text, Uuid

from servicekit.outbox import outbox_table

metadata = MetaData(schema="messages")

conversation_state = Table(
    "conversation_state",
    metadata,
    Column("conversation_id", Uuid, primary_key=True),
    # The seq of the newest message: the next one gets last_seq + 1 (see store.py for why).
    Column("last_seq", BigInteger, nullable=False),
    # Every event about the conversation takes the next position, so clients can see gaps.
    Column("last_position", BigInteger, nullable=False),
    # created_at of the newest message; never decreases, so created_at grows with seq.
    Column("last_message_at", DateTime(timezone=True)),
    # Retention deleted every message with seq <= this (a prefix: created_at grows with seq).
    Column("purged_through_seq", BigInteger, nullable=False),
    # conversations_service has not yet been told about the newest message (activity.py).
    Column("activity_pending", Boolean, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("conversation_id", Uuid, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("id", Uuid, nullable=False),
    Column("sender_id", Text, nullable=False),
    Column("client_msg_id", Text, nullable=False),
    Column("body", Text),  # NULL once deleted
    Column("reply_to", Uuid),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("edited_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
)

mentions = Table(
    "mentions",
    metadata,
    Column("conversation_id", Uuid, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("user_id", Text, primary_key=True),
)

reactions = Table(
    "reactions",
    metadata,
    Column("conversation_id", Uuid, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("emoji", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

member_pointers = Table(
    "member_pointers",
    metadata,
    Column("conversation_id", Uuid, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("read_seq", BigInteger, nullable=False),
    Column("delivered_seq", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
