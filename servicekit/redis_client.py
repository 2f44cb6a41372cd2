"""The Redis connection a service opens once at start-up."""

from __future__ import annotations

from typing import Final

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

# Seconds. Short enough that /readyz notices a dead Redis quickly; long enough for a busy one.
SOCKET_TIMEOUT_SECONDS: Final = 2.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
# Pings an idle pooled connection before reuse, so one broken by a Redis restart is replaced.
HEALTH_CHECK_INTERVAL_SECONDS: Final = 10
# from_url() gives connections no retries; a command that meets a connection broken by a Redis
# restart is retried on a fresh one instead of failing (waits up to 0.1 s, 3 tries).
COMMAND_RETRIES: Final = 3
RETRY_BACKOFF_CAP_SECONDS: Final = 0.1
RETRY_BACKOFF_BASE_SECONDS: Final = 0.01


class RedisConnection:
    """One pooled asyncio Redis client, plus its readiness check."""

    def __init__(self, redis_url: str) -> None:
        self.client: redis.Redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            retry=Retry(
                ExponentialWithJitterBackoff(
                    cap=RETRY_BACKOFF_CAP_SECONDS, base=RETRY_BACKOFF_BASE_SECONDS
                ),
                COMMAND_RETRIES,
            ),
            decode_responses=False,
        )

    async def check(self) -> None:
        """Raise unless Redis answers PING."""
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
