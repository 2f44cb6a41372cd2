"""The Redis connection a service opens once at start-up."""

from __future__ import annotations

from typing import Final

import redis.asyncio as redis

# Seconds. Short enough that /readyz notices a dead Redis quickly; long enough for a busy one.
SOCKET_TIMEOUT_SECONDS: Final = 2.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
# Pings an idle pooled connection before reuse, so one broken by a Redis restart is replaced.
HEALTH_CHECK_INTERVAL_SECONDS: Final = 10


class RedisConnection:
    """One pooled asyncio Redis client, plus its readiness check."""

    def __init__(self, redis_url: str) -> None:
        self.client: redis.Redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            decode_responses=False,
        )

    async def check(self) -> None:
        """Raise unless Redis answers PING."""
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
