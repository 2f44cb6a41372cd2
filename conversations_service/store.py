"""Conversations, members, invitations and known principals in the database.

The functions here run inside a caller's transaction (``connection``), because the service's
rules read and write several of them in one unit of work together with that unit's events
(``servicekit.outbox``). Each is named after what it returns or does. Every write is idempotent
or guarded by a key, so a unit of work rerun after a 40001 never writes twice.

Concurrent changes to one conversation are serialised by ``lock_live_conversation`` (``SELECT …
FOR UPDATE`` on the conversation row): under READ COMMITTED the second writer waits and then
reads the first one's result; under snapshot isolation (YugabyteDB, or PostgreSQL's REPEATABLE
READ) it fails with 40001 and is rerun. Rules such as "the last owner cannot leave" therefore
always see the current members.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    RowMapping,
    Uuid,
    and_,
    column,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncConnection

from conversations_service.tables import (
    conversations,
    direct_pairs,
    invitations,
    members,
    principals,
)


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    kind: str
    title: str | None
    description: str | None
    created_by: str
    created_at: datetime
    revision: int
    last_seq: int | None
    last_activity_at: datetime


@dataclass(frozen=True)
class Member:
    user_id: str
    role: str
    added_by: str
    joined_at: datetime


@dataclass(frozen=True)
class Invitation:
    id: uuid.UUID
    conversation_id: uuid.UUID
    invitee_id: str
    inviter_id: str
    state: str  # as stored; see ``Invitation.effective_state``
    created_at: datetime
    expires_at: datetime
    responded_at: datetime | None

    def effective_state(self, now: datetime) -> str:
        """The state a client sees: a pending invitation past its expiry is "expired"."""
        if self.state == "pending" and self.expires_at <= now:
            return "expired"
        return self.state


@dataclass(frozen=True)
class ActivityReport:
    """messages_service's news about one conversation: its newest message."""

    conversation_id: uuid.UUID
    last_seq: int
    last_message_at: datetime


_CONVERSATION_COLUMNS = [
    conversations.c.id,
    conversations.c.kind,
    conversations.c.title,
    conversations.c.description,
    conversations.c.created_by,
    conversations.c.created_at,
    conversations.c.revision,
    conversations.c.last_seq,
    conversations.c.last_activity_at,
]
_MEMBER_COLUMNS = [members.c.user_id, members.c.role, members.c.added_by, members.c.joined_at]


def _conversation(mapping: RowMapping) -> Conversation:
    return Conversation(**{c.name: mapping[c.name] for c in _CONVERSATION_COLUMNS})


def _member(mapping: RowMapping) -> Member:
    return Member(**{c.name: mapping[c.name] for c in _MEMBER_COLUMNS})


def _invitation(mapping: RowMapping) -> Invitation:
    return Invitation(**{c.name: mapping[c.name] for c in invitations.c})


# Conversations ---------------------------------------------------------------------------------


async def get_live_conversation(
    connection: AsyncConnection, conversation_id: uuid.UUID, *, lock: bool = False
) -> Conversation | None:
    """The conversation unless it does not exist or was deleted; ``lock`` holds its row."""
    statement = select(*_CONVERSATION_COLUMNS).where(
        conversations.c.id == conversation_id, conversations.c.deleted_at.is_(None)
    )
    if lock:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).first()
    return None if row is None else _conversation(row._mapping)


async def lock_live_conversation(
    connection: AsyncConnection, conversation_id: uuid.UUID
) -> Conversation | None:
    """The live conversation, its row locked until the transaction ends (see module doc)."""
    return await get_live_conversation(connection, conversation_id, lock=True)


async def insert_conversation(
    connection: AsyncConnection, conversation: Conversation, initial_members: Sequence[Member]
) -> None:
    await connection.execute(
        insert(conversations).values(
            {c.name: getattr(conversation, c.name) for c in _CONVERSATION_COLUMNS}
        )
    )
    await connection.execute(
        insert(members),
        [
            {
                "conversation_id": conversation.id,
                "user_id": member.user_id,
                "role": member.role,
                "added_by": member.added_by,
                "joined_at": member.joined_at,
                "last_activity_at": conversation.last_activity_at,
            }
            for member in initial_members
        ],
    )


async def claim_direct_pair(
    connection: AsyncConnection, pair: tuple[str, str], conversation_id: uuid.UUID
) -> uuid.UUID:
    """The id of the pair's direct conversation: ``conversation_id`` if this call claimed the
    pair, else the one claimed before (by a committed transaction, or by one this waited for)."""
    low_id, high_id = pair
    await connection.execute(
        upsert(direct_pairs)
        .values(low_id=low_id, high_id=high_id, conversation_id=conversation_id)
        .on_conflict_do_nothing(index_elements=["low_id", "high_id"])
    )
    claimed: uuid.UUID = (
        await connection.execute(
            select(direct_pairs.c.conversation_id).where(
                direct_pairs.c.low_id == low_id, direct_pairs.c.high_id == high_id
            )
        )
    ).scalar_one()
    return claimed


async def advance_revision(
    connection: AsyncConnection, conversation_id: uuid.UUID, *, deleted_at: datetime | None = None
) -> int:
    """Count one more visible change of the conversation (optionally its deletion); the new
    revision, which is that change's event position."""
    changes: dict[str, object] = {"revision": conversations.c.revision + 1}
    if deleted_at is not None:
        changes["deleted_at"] = deleted_at
    revision: int = (
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(changes)
            .returning(conversations.c.revision)
        )
    ).scalar_one()
    return revision


async def update_details(
    connection: AsyncConnection, conversation_id: uuid.UUID, changes: dict[str, str | None]
) -> None:
    """Set the conversation's title and/or description."""
    await connection.execute(
        update(conversations).where(conversations.c.id == conversation_id).values(changes)
    )


async def get_conversations_page(
    connection: AsyncConnection,
    user_id: str,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[Conversation, str]]:
    """The user's conversations with their role, most recent activity first, after ``after``
    (the ``(last_activity_at, id)`` of the previous page's last one): a range scan of
    ``members_by_user``."""
    conditions = [members.c.user_id == user_id]
    if after is not None:
        conditions.append(
            tuple_(members.c.last_activity_at, members.c.conversation_id) < tuple_(*after)
        )
    statement = (
        select(*_CONVERSATION_COLUMNS, members.c.role.label("my_role"))
        .select_from(members.join(conversations, conversations.c.id == members.c.conversation_id))
        .where(and_(*conditions))
        .order_by(members.c.last_activity_at.desc(), members.c.conversation_id.desc())
        .limit(limit)
    )
    rows = (await connection.execute(statement)).all()
    return [(_conversation(row._mapping), row.my_role) for row in rows]


async def get_conversation_ids_of(connection: AsyncConnection, user_id: str) -> list[uuid.UUID]:
    """Every live conversation ``user_id`` belongs to, most recent activity first."""
    statement = (
        select(members.c.conversation_id)
        .where(members.c.user_id == user_id)
        .order_by(members.c.last_activity_at.desc(), members.c.conversation_id.desc())
    )
    return list((await connection.execute(statement)).scalars())


async def record_activity(connection: AsyncConnection, reports: Sequence[ActivityReport]) -> None:
    """Move each live conversation's last_seq and last activity forward (never back), on the
    conversation and on each of its memberships; unknown conversations are ignored."""
    if not reports:
        return
    news = values(
        column("conversation_id", Uuid),
        column("last_seq", BigInteger),
        column("last_message_at", DateTime(timezone=True)),
        name="news",
    ).data([(r.conversation_id, r.last_seq, r.last_message_at) for r in reports])
    await connection.execute(
        update(conversations)
        .where(
            conversations.c.id == news.c.conversation_id,
            conversations.c.deleted_at.is_(None),
        )
        .values(
            last_seq=func.greatest(func.coalesce(conversations.c.last_seq, 0), news.c.last_seq),
            last_activity_at=func.greatest(
                conversations.c.last_activity_at, news.c.last_message_at
            ),
        )
    )
    await connection.execute(
        update(members)
        .where(
            members.c.conversation_id == news.c.conversation_id,
            members.c.last_activity_at < news.c.last_message_at,
        )
        .values(last_activity_at=news.c.last_message_at)
    )


# Members ---------------------------------------------------------------------------------------


async def get_member(
    connection: AsyncConnection, conversation_id: uuid.UUID, user_id: str
) -> Member | None:
    row = (
        await connection.execute(
            select(*_MEMBER_COLUMNS).where(
                members.c.conversation_id == conversation_id, members.c.user_id == user_id
            )
        )
    ).first()
    return None if row is None else _member(row._mapping)


async def get_members(
    connection: AsyncConnection,
    conversation_id: uuid.UUID,
    *,
    user_ids: Iterable[str] | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Member]:
    """The conversation's members by user id (only ``user_ids``, when given; after ``after``)."""
    statement = select(*_MEMBER_COLUMNS).where(members.c.conversation_id == conversation_id)
    if user_ids is not None:
        statement = statement.where(members.c.user_id.in_(list(user_ids)))
    if after is not None:
        statement = statement.where(members.c.user_id > after)
    statement = statement.order_by(members.c.user_id)
    if limit is not None:
        statement = statement.limit(limit)
    return [_member(row._mapping) for row in await connection.execute(statement)]


async def get_members_of(
    connection: AsyncConnection, conversation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Member]]:
    """The members of each conversation, by user id."""
    found: dict[uuid.UUID, list[Member]] = {
        conversation_id: [] for conversation_id in conversation_ids
    }
    if not conversation_ids:
        return found
    statement = (
        select(members.c.conversation_id, *_MEMBER_COLUMNS)
        .where(members.c.conversation_id.in_(list(conversation_ids)))
        .order_by(members.c.conversation_id, members.c.user_id)
    )
    for row in await connection.execute(statement):
        found[row.conversation_id].append(_member(row._mapping))
    return found


async def count_members(connection: AsyncConnection, conversation_id: uuid.UUID) -> int:
    statement = select(func.count()).where(members.c.conversation_id == conversation_id)
    count: int = (await connection.execute(statement)).scalar_one()
    return count


async def count_owners(connection: AsyncConnection, conversation_id: uuid.UUID) -> int:
    statement = select(func.count()).where(
        members.c.conversation_id == conversation_id, members.c.role == "owner"
    )
    count: int = (await connection.execute(statement)).scalar_one()
    return count


async def insert_member(
    connection: AsyncConnection, conversation: Conversation, member: Member
) -> None:
    await connection.execute(
        insert(members).values(
            conversation_id=conversation.id,
            user_id=member.user_id,
            role=member.role,
            added_by=member.added_by,
            joined_at=member.joined_at,
            last_activity_at=conversation.last_activity_at,
        )
    )


async def set_role(
    connection: AsyncConnection, conversation_id: uuid.UUID, user_id: str, role: str
) -> None:
    await connection.execute(
        update(members)
        .where(members.c.conversation_id == conversation_id, members.c.user_id == user_id)
        .values(role=role)
    )


async def delete_members(
    connection: AsyncConnection, conversation_id: uuid.UUID, user_ids: Iterable[str] | None = None
) -> None:
    """Remove ``user_ids`` (everyone, when not given) from the conversation."""
    statement = delete(members).where(members.c.conversation_id == conversation_id)
    if user_ids is not None:
        statement = statement.where(members.c.user_id.in_(list(user_ids)))
    await connection.execute(statement)


# Invitations -----------------------------------------------------------------------------------


async def get_invitation(
    connection: AsyncConnection, invitation_id: uuid.UUID, *, lock: bool = False
) -> Invitation | None:
    statement = select(*invitations.c).where(invitations.c.id == invitation_id)
    if lock:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).first()
    return None if row is None else _invitation(row._mapping)


async def get_pending_invitation(
    connection: AsyncConnection, conversation_id: uuid.UUID, invitee_id: str
) -> Invitation | None:
    """The invitation to the conversation still stored as pending, expired or not."""
    statement = select(*invitations.c).where(
        invitations.c.conversation_id == conversation_id,
        invitations.c.invitee_id == invitee_id,
        invitations.c.state == "pending",
    )
    row = (await connection.execute(statement)).first()
    return None if row is None else _invitation(row._mapping)


async def insert_invitation(connection: AsyncConnection, invitation: Invitation) -> None:
    await connection.execute(
        insert(invitations).values({c.name: getattr(invitation, c.name) for c in invitations.c})
    )


async def set_invitation_state(
    connection: AsyncConnection, invitation_id: uuid.UUID, state: str, responded_at: datetime
) -> Invitation:
    row = (
        await connection.execute(
            update(invitations)
            .where(invitations.c.id == invitation_id)
            .values(state=state, responded_at=responded_at)
            .returning(*invitations.c)
        )
    ).one()
    return _invitation(row._mapping)


async def revoke_pending_invitations(
    connection: AsyncConnection, conversation_id: uuid.UUID, now: datetime
) -> None:
    """End every invitation to a conversation that is being deleted."""
    await connection.execute(
        update(invitations)
        .where(invitations.c.conversation_id == conversation_id, invitations.c.state == "pending")
        .values(state="revoked", responded_at=now)
    )


async def get_pending_invitations_page(
    connection: AsyncConnection,
    *,
    now: datetime,
    invitee_id: str | None = None,
    conversation_id: uuid.UUID | None = None,
    before: uuid.UUID | None,
    limit: int,
) -> list[Invitation]:
    """Unexpired pending invitations of one invitee or to one conversation, newest first,
    older than ``before`` (an invitation id: UUIDv7 ids sort by creation)."""
    statement = select(*invitations.c).where(
        invitations.c.state == "pending", invitations.c.expires_at > now
    )
    if invitee_id is not None:
        statement = statement.where(invitations.c.invitee_id == invitee_id)
    if conversation_id is not None:
        statement = statement.where(invitations.c.conversation_id == conversation_id)
    if before is not None:
        statement = statement.where(invitations.c.id < before)
    statement = statement.order_by(invitations.c.id.desc()).limit(limit)
    return [_invitation(row._mapping) for row in await connection.execute(statement)]


async def get_titles(
    connection: AsyncConnection, conversation_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str | None]:
    """The titles of live conversations among ``conversation_ids``."""
    statement = select(conversations.c.id, conversations.c.title).where(
        conversations.c.id.in_(list(set(conversation_ids))), conversations.c.deleted_at.is_(None)
    )
    return {row.id: row.title for row in await connection.execute(statement)}


# Principals ------------------------------------------------------------------------------------


async def get_known_principal_ids(connection: AsyncConnection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` this service knows."""
    statement = select(principals.c.id).where(principals.c.id.in_(list(ids)))
    return set((await connection.execute(statement)).scalars())


async def record_principals(
    connection: AsyncConnection, kinds_by_id: dict[str, str], now: datetime
) -> None:
    """Remember each principal (id → "user" | "machine"); known ones are left as they are."""
    if not kinds_by_id:
        return
    await connection.execute(
        upsert(principals)
        .values(
            [{"id": i, "kind": k, "first_seen_at": now} for i, k in sorted(kinds_by_id.items())]
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
