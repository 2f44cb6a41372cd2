"""Telling conversations_service about each conversation's newest message.

conversations_service orders conversation lists by recent activity, but it does not own messages,
so it is told ``(conversation_id, last_seq, last_message_at)`` through ``POST /internal/activity``.

Not from the send itself: that would add an upstream call (and its failure modes) to every send,
and a report lost to a crash between commit and call would never be repeated. Instead the send
transaction sets ``conversation_state.activity_pending``, and this reporter, a background task in
every instance, sends the pending conversations in batches and clears the flag only where
``last_seq`` is still what it reported. So reports are

- coalesced: a burst of 100 messages in one conversation becomes one report per interval;
- reliable: the flag is in the database, so a report survives restarts and upstream outages;
- harmless to repeat: conversations_service applies them monotonically and idempotently, so two
  instances reporting the same row, or a report retried after a timeout, change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import uuid6
from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from messages_service.models import Activity
from messages_service.tables import conversation_state
from servicekit.background import PeriodicTask
from servicekit.client_credentials import ClientCredentialsTokenSource
from servicekit.db import Database
from servicekit.errors import ParleyError
from servicekit.http import IDEMPOTENCY_KEY_HEADER, UpstreamClient
from servicekit.timestamps import utc_timestamp

logger = logging.getLogger("messages_service.activity")

ACTIVITY_INTERVAL_SECONDS: Final = 1.0  # conversation lists may lag the newest message this much
ACTIVITY_BATCH_SIZE: Final = 500  # the most conversations_service accepts in one report


async def get_pending_activity(database: Database, limit: int) -> list[Activity]:
    """Conversations whose newest message conversations_service has not been told about."""
    query = (
        select(
            conversation_state.c.conversation_id,
            conversation_state.c.last_seq,
            conversation_state.c.last_message_at,
        )
        .where(conversation_state.c.activity_pending.is_(True))
        .limit(limit)
    )

    async def work(connection: AsyncConnection) -> list[Activity]:
        rows = await connection.execute(query)
        return [Activity(row[0], row[1], row[2]) for row in rows if row[2] is not None]

    return await database.transaction(work)


async def clear_pending_activity(database: Database, reported: Sequence[Activity]) -> None:
    """Clear the flag where nothing newer arrived since ``reported`` was read."""
    keys = [(item.conversation_id, item.last_seq) for item in reported]
    statement = (
        update(conversation_state)
        .where(
            tuple_(conversation_state.c.conversation_id, conversation_state.c.last_seq).in_(keys)
        )
        .values(activity_pending=False)
    )
    await database.transaction(lambda connection: connection.execute(statement))


class ActivityReporter:
    """Reports pending activity to conversations_service, from a background task."""

    def __init__(
        self,
        database: Database,
        client: UpstreamClient,
        tokens: ClientCredentialsTokenSource,
        *,
        interval_seconds: float = ACTIVITY_INTERVAL_SECONDS,
    ) -> None:
        self._database = database
        self._client = client
        self._tokens = tokens
        self._loop = PeriodicTask("activity reporter", self._report_all, interval_seconds)

    async def report_once(self) -> int:
        """Report one batch of pending conversations; returns how many were reported."""
        pending = await get_pending_activity(self._database, ACTIVITY_BATCH_SIZE)
        if not pending:
            return 0
        await self._report(pending)
        await clear_pending_activity(self._database, pending)
        return len(pending)

    async def _report(self, pending: list[Activity]) -> None:
        token = await self._tokens.token()
        response = await self._client.post(
            "/internal/activity",
            json={
                "items": [
                    {
                        "conversation_id": str(item.conversation_id),
                        "last_seq": item.last_seq,
                        "last_message_at": utc_timestamp(item.last_message_at),
                    }
                    for item in pending
                ]
            },
            headers={
                "Authorization": f"Bearer {token}",
                # The report is idempotent, so the client may retry it after a timeout.
                IDEMPOTENCY_KEY_HEADER: str(uuid6.uuid7()),
            },
        )
        if response.status_code >= 300:
            raise ActivityRefused(f"conversations_service answered {response.status_code}")

    async def _report_all(self) -> None:
        try:
            while await self.report_once() == ACTIVITY_BATCH_SIZE:
                pass
        except (ParleyError, ActivityRefused) as error:
            # Upstream down or refusing: the flags stay set and the next round retries.
            logger.warning("activity report failed", extra={"error": str(error)})

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()


class ActivityRefused(Exception):
    """conversations_service answered a report with something other than success."""
