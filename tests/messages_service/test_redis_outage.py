"""A Redis outage while messages flow: sends keep working, and every message's event is
published once Redis is back (the outbox).

Every instance relays the outbox table of its database, so another messages_service publishing
to another Redis would take these events away from this test: the instance here gets a database
of its own.
"""

from __future__ import annotations

import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from parley.embedded import EmbeddedRedis, free_port
from tests.messages_service.conftest import Chat, MessagesStarter, collected_events, eventually
from tests.support.database import StorageServers, create_test_database, drop_test_database
from tests.support.issuer import LocalIssuer

REDIS_PASSWORD = "until-the-test-is-listening"


class LockedRedis(EmbeddedRedis):
    """An embedded Redis that starts with a password, so only the test can use it at first:
    the outbox cannot publish before the test's subscriber is listening."""

    def _spawn(self, command: list[str], run_as: pwd.struct_passwd | None) -> None:
        super()._spawn([*command, "--requirepass", REDIS_PASSWORD], run_as)


@pytest.fixture
def own_database_url(storage_servers: StorageServers, database_mode: str) -> Iterator[str]:
    """A database in this run's mode that no other messages_service uses."""
    name = f"parley_test_outage_{uuid.uuid4().hex[:10]}"
    url = create_test_database(storage_servers.postgres_url, name, database_mode)
    try:
        yield url
    finally:
        drop_test_database(storage_servers.postgres_url, name)


async def test_with_redis_down_every_event_is_published_once_it_is_back(
    own_database_url: str,
    start_messages: MessagesStarter,
    conversations_url: str,
    issuer: LocalIssuer,
    tmp_path: Path,
    event_namespace: str,
) -> None:
    port = free_port()
    own_redis = EmbeddedRedis(tmp_path / "first", port)
    redis_url = own_redis.start()
    try:
        async with start_messages(
            REDIS_URL=redis_url, DATABASE_URL=own_database_url
        ) as messages_url:
            own = Chat(messages_url, conversations_url, issuer)
            try:
                alice, bob = own.person(), own.person()
                conversation_id = await own.group(alice, bob)
                async with collected_events(redis_url, event_namespace) as before:
                    await own.message(alice, conversation_id, "while Redis is up")
                    await eventually(lambda: len(before) == 1)

                own_redis.stop()
                sent = [await own.message(bob, conversation_id, f"down {n}") for n in range(5)]
                assert [m["seq"] for m in sent] == [2, 3, 4, 5, 6]

                # Back on the same port, locked until the test's subscriber is listening.
                own_redis = LockedRedis(tmp_path / "second", port)
                own_redis.start()
                async with collected_events(
                    redis_url, event_namespace, password=REDIS_PASSWORD
                ) as after:
                    admin = redis.Redis.from_url(redis_url, password=REDIS_PASSWORD)
                    await admin.config_set("requirepass", "")
                    await admin.aclose()
                    await eventually(lambda: len(after) >= 5)

                # Delivery is at least once (a relay transaction retried after a conflict publishes
                # again), with one event id per change: count distinct events.
                created = list({e.id: e for e in after if e.type == "message.created"}.values())
                assert sorted(e.data["seq"] for e in created) == [2, 3, 4, 5, 6]
                assert {e.data["id"] for e in created} == {m["id"] for m in sent}
                assert all(e.conversation_id == conversation_id for e in created)
                assert all(sorted(e.user_ids) == sorted([alice.id, bob.id]) for e in created)
            finally:  # an open keep-alive connection would hold up the server's shutdown
                await own.http.aclose()
    finally:
        own_redis.stop()
