"""Rate limiting of sign-in attempts per client IP, counted in Redis so every process agrees.

A moving window (``limits``' Redis implementation): the limit holds over any span of the window's
length, so a burst at a window boundary cannot double it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import limits
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from servicekit.errors import RateLimited


class LoginRateLimiter:
    """Refuses a client that starts more sign-ins than ``limit`` (e.g. ``30/minute``)."""

    def __init__(self, redis: Redis, namespace: str, limit: str) -> None:
        self._limit = limits.parse(limit)
        # Shares the service's connection pool: nothing more to open, check or close.
        pool: dict[str, Any] = {"connection_pool": redis.connection_pool}  # typed too narrowly
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{namespace}:bff:rate-limit",
            **pool,
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def check(self, connection: HTTPConnection) -> None:
        """Count one sign-in from the connection's client; ``RateLimited`` past the limit."""
        # The peer address; behind a reverse proxy, uvicorn's --proxy-headers and
        # --forwarded-allow-ips make it the browser's.
        client_ip = connection.client.host if connection.client else "unknown"
        if await self._limiter.hit(self._limit, "login", client_ip):
            return
        stats = await self._limiter.get_window_stats(self._limit, "login", client_ip)
        raise RateLimited(
            "Too many sign-in attempts from this address; try again shortly.",
            retry_after=math.ceil(stats.reset_time - time.time()),
        )
