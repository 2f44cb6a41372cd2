"""conversations_service's tables, all in the ``conversations`` schema (created by its migrations).

A conversation's ``revision`` counts the changes its members can see (title, description,
membership, roles, deletion); each such change's event carries the new revision as its
``position``, so a client that misses one sees the gap. ``last_seq`` / ``last_activity_at``
come from messages_service (``POST /internal/activity``) and only move forward.

``members.last_activity_at`` copies the conversation's ``last_activity_at`` onto each membership,
so a person's conversations, most recent activity first, are one range scan of the index
``members_by_user`` instead of a sort of every conversation they are in. The price is one
update per member when a conversation becomes active, which messages_service batches.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, Uuid

from servicekit.outbox import outbox_table

metadata = MetaData(schema="conversations")

conversations = Table(
    "conversations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", Text, nullable=False),  # "direct" or "group"
    Column("title", Text),  # groups only
    Column("description", Text),  # groups only, optional
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("last_seq", BigInteger),  # the newest message's seq; None before the first message
    Column("last_activity_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
)

# Who belongs to a live conversation; a deleted conversation has no rows here.
members = Table(
    "members",
    metadata,
    Column("conversation_id", Uuid, primary_key=True),
    Column("user_id", Text, primary_key=True),  # a user's sub or "machine:<sub>"
    Column("role", Text, nullable=False),  # "owner", "admin" or "member"
    Column("added_by", Text, nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("last_activity_at", DateTime(timezone=True), nullable=False),
)

# One row per unordered pair of people with a direct conversation: (low_id, high_id) sorted,
# so two people creating their conversation at the same moment collide on this key.
direct_pairs = Table(
    "direct_pairs",
    metadata,
    Column("low_id", Text, primary_key=True),
    Column("high_id", Text, primary_key=True),
    Column("conversation_id", Uuid, nullable=False),
)

# state: "pending", "accepted", "declined", "revoked" or "expired". A pending invitation whose
# expires_at has passed is shown as "expired" (and stored so when a new invitation replaces
# it); at most one pending invitation per conversation and invitee.
invitations = Table(
    "invitations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("conversation_id", Uuid, nullable=False),
    Column("invitee_id", Text, nullable=False),
    Column("inviter_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("responded_at", DateTime(timezone=True)),
)

# Every principal that has called this service's API, or that the directory confirmed exists.
principals = Table(
    "principals",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # "user" or "machine"
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
