"""The per-sender limit on message sends, counted in Redis (moving windows, ``limits``).

Every send attempt counts, whatever becomes of it, so a client cannot probe conversations or
flood conversations_service faster than it could post. The counters live in Redis so that every
instance of the service shares them.

When Redis cannot be reached the limit is not enforced (fail open): a message is worth more than
a rate limit, and the outbox keeps every event for when Redis returns, so a Redis outage must not
stop people talking.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import redis.asyncio as redis
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from servicekit.errors import RateLimited

logger = logging.getLogger("messages_service.throttle")


class SendThrottle:
    """Refuses a sender's send with 429 and ``Retry-After`` once a window is full."""

    def __init__(
        self, client: redis.Redis, namespace: str, limits: Sequence[RateLimitItem]
    ) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{namespace}:messages:send-limits",
            wrap_exceptions=True,
            # Shares the service's pool; limits documents the option but types options narrowly.
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._limits = tuple(limits)

    async def count_send(self, sender_id: str) -> None:
        """Count one send by ``sender_id``; ``RateLimited`` when a window is already full."""
        try:
            for item in self._limits:
                if not await self._limiter.hit(item, "sender", sender_id):
                    stats = await self._limiter.get_window_stats(item, "sender", sender_id)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    raise RateLimited(
                        f"Too many messages; try again in {wait} s.", retry_after=wait
                    )
        except StorageError as error:
            logger.warning("send limit not enforced: Redis failed", extra={"error": repr(error)})
