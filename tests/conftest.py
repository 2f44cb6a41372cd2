"""Fixtures shared by every test: real PostgreSQL and Redis, isolated per run.

PostgreSQL and Redis are taken from ``DATABASE_URL`` / ``REDIS_URL`` when set, else from the local
defaults, else started embedded for the run. Each run creates its own databases (one per database
mode, see ``tests/support/database.py``) and its own Redis namespace, and removes both at the end,
so two runs on one machine never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from parley.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from parley.storage import postgres_problem, redis_problem
from servicekit.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from tests.support.database import (
    POSTGRES_MODE,
    YUGABYTE_LIKE_MODE,
    StorageServers,
    create_test_database,
    drop_test_database,
)

RUN_ID = uuid.uuid4().hex[:10]
PROBE_TIMEOUT_SECONDS = 2.0


@pytest.fixture(scope="session")
def storage_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServers]:
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    postgres_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if postgres_problem(postgres_url, PROBE_TIMEOUT_SECONDS) is not None:
        server = EmbeddedPostgres(tmp_path_factory.mktemp("postgresql"), free_port())
        postgres_url = server.start()
        started.append(server)
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_problem(redis_url, PROBE_TIMEOUT_SECONDS) is not None:
        redis_server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port())
        redis_url = redis_server.start()
        started.append(redis_server)
    try:
        yield StorageServers(postgres_url, redis_url)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session", params=[POSTGRES_MODE, YUGABYTE_LIKE_MODE])
def database_mode(request: pytest.FixtureRequest) -> str:
    """The database mode; every test using the database runs in both."""
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(storage_servers: StorageServers, database_mode: str) -> Iterator[str]:
    """A migrated database of this run, in ``database_mode``."""
    name = f"parley_test_{RUN_ID}_{database_mode.replace('-', '_')}"
    url = create_test_database(storage_servers.postgres_url, name, database_mode)
    try:
        yield url
    finally:
        drop_test_database(storage_servers.postgres_url, name)


@pytest.fixture(scope="session")
def redis_url(storage_servers: StorageServers) -> str:
    return storage_servers.redis_url


@pytest.fixture(scope="session")
def redis_namespace(storage_servers: StorageServers) -> Iterator[str]:
    """This run's Redis key and channel prefix; its keys are deleted at the end."""
    namespace = f"parley-test-{RUN_ID}"
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(storage_servers.redis_url)
        try:
            for key in client.scan_iter(match=f"{namespace}:*", count=500):
                client.delete(key)
        finally:
            client.close()
