"""The retrying transaction helper, against real PostgreSQL in both database modes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.db import Database, is_retryable, sqlalchemy_url
from tests.support.database import YUGABYTE_LIKE_MODE, install_commit_faults


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=10)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def counter_table(database: Database, database_url: str, database_mode: str) -> str:
    """A scratch table in its own schema, with commit faults when the mode injects them."""
    schema = f"scratch_{uuid.uuid4().hex[:8]}"

    async def create(connection: AsyncConnection) -> None:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
        await connection.execute(
            text(f"CREATE TABLE {schema}.counters (name text PRIMARY KEY, value int NOT NULL)")
        )
        await connection.execute(text(f"CREATE TABLE {schema}.events (id uuid PRIMARY KEY)"))

    await database.transaction(create)
    if database_mode == YUGABYTE_LIKE_MODE:
        install_commit_faults(database_url, [schema], probability=0.3)
    return schema


def test_plain_postgres_urls_are_given_the_psycopg_driver() -> None:
    assert sqlalchemy_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert sqlalchemy_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"


async def test_concurrent_increments_all_land_exactly_once(
    database: Database, counter_table: str, database_mode: str
) -> None:
    """Under snapshot isolation concurrent updates of one row conflict for real (40001)."""
    await database.transaction(
        lambda c: c.execute(text(f"INSERT INTO {counter_table}.counters VALUES ('hits', 0)"))
    )
    attempts = 0

    async def increment(connection: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        current = (
            await connection.execute(
                text(f"SELECT value FROM {counter_table}.counters WHERE name = 'hits'")
            )
        ).scalar_one()
        await asyncio.sleep(0.001)  # widen the window in which another transaction interleaves
        await connection.execute(
            text(f"UPDATE {counter_table}.counters SET value = :value WHERE name = 'hits'"),
            {"value": current + 1},
        )

    await asyncio.gather(*(database.transaction(increment) for _ in range(20)))
    final = await database.transaction(
        lambda c: c.execute(text(f"SELECT value FROM {counter_table}.counters"))
    )
    if database_mode == YUGABYTE_LIKE_MODE:
        assert final.scalar_one() == 20
        assert attempts > 20, "snapshot isolation and injected faults must force retries"
    else:
        # READ COMMITTED loses updates in this read-modify-write; the point is that nothing
        # retries there, so the helper does not hide conflicts that never happened.
        assert 1 <= final.scalar_one() <= 20
        assert attempts == 20


async def test_injected_commit_failures_are_retried_without_duplicates(
    database: Database, counter_table: str, database_mode: str
) -> None:
    attempts = 0

    async def insert_event(connection: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        await connection.execute(
            text(f"INSERT INTO {counter_table}.events VALUES (:id)"), {"id": uuid.uuid4()}
        )

    for _ in range(30):
        await database.transaction(insert_event)
    count = await database.transaction(
        lambda c: c.execute(text(f"SELECT count(*) FROM {counter_table}.events"))
    )
    assert count.scalar_one() == 30
    if database_mode == YUGABYTE_LIKE_MODE:
        assert attempts > 30
    else:
        assert attempts == 30


async def test_other_errors_are_raised_at_once(database: Database, counter_table: str) -> None:
    attempts = 0

    async def insert_duplicate(connection: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        for _ in range(2):
            await connection.execute(
                text(f"INSERT INTO {counter_table}.counters VALUES ('dup', 1)")
            )

    with pytest.raises(IntegrityError):
        await database.transaction(insert_duplicate)
    assert attempts == 1


async def test_gives_up_after_the_attempt_budget(
    database: Database, database_url: str, counter_table: str
) -> None:
    install_commit_faults(database_url, [counter_table], probability=1.0)
    attempts = 0

    async def insert_event(connection: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        await connection.execute(
            text(f"INSERT INTO {counter_table}.events VALUES (:id)"), {"id": uuid.uuid4()}
        )

    with pytest.raises(Exception) as raised:  # noqa: PT011 - checked just below
        await database.transaction(insert_event, attempts=3)
    assert is_retryable(raised.value)
    assert attempts == 3
    count = await database.transaction(
        lambda c: c.execute(text(f"SELECT count(*) FROM {counter_table}.events"))
    )
    assert count.scalar_one() == 0, "a failed commit must leave nothing behind"


async def test_database_mode_is_visible_to_every_connection(
    database: Database, database_mode: str
) -> None:
    isolation = await database.transaction(
        lambda c: c.execute(text("SHOW default_transaction_isolation"))
    )
    expected = "repeatable read" if database_mode == YUGABYTE_LIKE_MODE else "read committed"
    assert isolation.scalar_one() == expected
