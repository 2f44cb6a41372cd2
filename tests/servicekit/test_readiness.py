"""/readyz follows the real database and Redis: false soon after one stops, true once it returns.

These tests stop and start servers, so they use their own embedded PostgreSQL and Redis rather
than the shared ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from conversations_service.app import create_app
from conversations_service.settings import load_settings
from parley.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.support.servers import serve_in_loop

pytestmark = pytest.mark.slow

# Seconds. The brief asks for "within seconds"; the checks themselves time out after 1 s.
READINESS_CHANGE_DEADLINE = 8.0


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("readiness-postgres"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("readiness-redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def service_url(
    own_postgres: EmbeddedPostgres, own_redis: EmbeddedRedis
) -> AsyncIterator[str]:
    settings = load_settings({"DATABASE_URL": own_postgres.url, "REDIS_URL": own_redis.url})
    async with serve_in_loop(create_app(settings)) as url:
        yield url


async def wait_for_readiness(url: str, expected_status: int) -> dict[str, Any]:
    """Poll /readyz until it answers ``expected_status``; return its body."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            response = await client.get("/readyz")
            elapsed = time.monotonic() - started
            if response.status_code == expected_status:
                body: dict[str, Any] = response.json()
                return body
            if elapsed > READINESS_CHANGE_DEADLINE:
                pytest.fail(f"/readyz still {response.status_code}: {response.text}")
            await asyncio.sleep(0.2)


async def test_readyz_follows_postgresql_going_away_and_coming_back(
    service_url: str, own_postgres: EmbeddedPostgres
) -> None:
    await wait_for_readiness(service_url, 200)
    own_postgres.stop()
    try:
        body = await wait_for_readiness(service_url, 503)
        assert body["checks"]["database"] != "ok"
        assert body["checks"]["redis"] == "ok"
    finally:
        own_postgres.start()
    body = await wait_for_readiness(service_url, 200)
    assert body["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_follows_redis_going_away_and_coming_back(
    service_url: str, own_redis: EmbeddedRedis
) -> None:
    await wait_for_readiness(service_url, 200)
    own_redis.stop()
    try:
        body = await wait_for_readiness(service_url, 503)
        assert body["checks"]["redis"] != "ok"
        assert body["checks"]["database"] == "ok"
    finally:
        own_redis.start()
    body = await wait_for_readiness(service_url, 200)
    assert body["checks"] == {"database": "ok", "redis": "ok"}


async def test_healthz_stays_up_while_dependencies_are_down(
    service_url: str, own_redis: EmbeddedRedis
) -> None:
    own_redis.stop()
    try:
        async with httpx.AsyncClient(base_url=service_url) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        own_redis.start()
