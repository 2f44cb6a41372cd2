"""The database: async SQLAlchemy Core over psycopg 3, with transactions that retry.

PostgreSQL and YugabyteDB both abort a transaction with SQLSTATE 40001 (serialization failure)
or 40P01 (deadlock) when it conflicts with another; YugabyteDB does so far more often, at any
statement and at commit. ``Database.transaction`` reruns the whole unit of work with jittered
exponential backoff, so callers write each unit as a function of a fresh connection and make its
writes idempotent: a retried commit must never write twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

T = TypeVar("T")

RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})
# A hot row (one busy conversation) under snapshot isolation lets one writer win per round, so a
# transaction may lose many rounds in a row: allow many short, jittered waits (random up to 5 ms,
# 10 ms, 20 ms, … capped at 250 ms), bounded by a total that stays inside a client's timeout.
TRANSACTION_ATTEMPTS: Final = 30
TRANSACTION_RETRY_DEADLINE_SECONDS: Final = 5.0
RETRY_WAIT_MULTIPLIER_SECONDS: Final = 0.005
RETRY_WAIT_MAX_SECONDS: Final = 0.25
CONNECT_TIMEOUT_SECONDS: Final = 5

logger = logging.getLogger("servicekit.db")

UnitOfWork = Callable[[AsyncConnection], Awaitable[T]]


def sqlalchemy_url(database_url: str) -> str:
    """``database_url`` with the psycopg 3 driver named, as SQLAlchemy needs it."""
    url = make_url(database_url)
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` is a conflict that rerunning the transaction can resolve."""
    if isinstance(error, DBAPIError):
        return getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    return False


def _log_retry(attempt: int, error: BaseException | None) -> None:
    logger.info(
        "transaction conflict, retrying",
        extra={
            "attempt": attempt,
            "sqlstate": getattr(getattr(error, "orig", None), "sqlstate", None),
        },
    )


class Database:
    """A connection pool and the retrying transaction helper built on it."""

    def __init__(self, database_url: str, *, pool_size: int = 5) -> None:
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(database_url),
            pool_size=pool_size,
            max_overflow=pool_size,
            # A connection broken by a database restart is replaced on checkout rather than
            # failing the request that drew it, so the service recovers without a restart.
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )

    async def transaction(self, work: UnitOfWork[T], *, attempts: int = TRANSACTION_ATTEMPTS) -> T:
        """Run ``work`` in one transaction, rerunning it on 40001/40P01; return its result.

        Gives up after ``attempts`` tries or ``TRANSACTION_RETRY_DEADLINE_SECONDS``, whichever
        comes first, re-raising the last conflict.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=wait_random_exponential(
                multiplier=RETRY_WAIT_MULTIPLIER_SECONDS, max=RETRY_WAIT_MAX_SECONDS
            ),
            stop=stop_after_attempt(attempts)
            | stop_after_delay(TRANSACTION_RETRY_DEADLINE_SECONDS),
            before_sleep=lambda state: _log_retry(
                state.attempt_number, state.outcome.exception() if state.outcome else None
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self.engine.begin() as connection:
                    return await work(connection)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def check(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def is_yugabyte(self) -> bool:
        async with self.engine.connect() as connection:
            version = (await connection.execute(text("SELECT version()"))).scalar_one()
        return "-YB-" in str(version)

    async def close(self) -> None:
        await self.engine.dispose()
