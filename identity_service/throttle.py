"""Throttling of sign-ins, registrations and password-reset requests, counted in Redis.

Each kind of attempt is counted per identifier (an email address or mobile number) and per
client address, each limited by tiers of moving windows (sign-in failures default to "5 per
minute; 10 per 15 minutes; 20 per hour"). The tiers make the back-off grow: a few attempts cost a
wait of up to a minute, persistent ones up to an hour. An identifier is counted whether or not an
account has it, so the throttle reveals nothing about which accounts exist.

Counting per address as well stops one client spraying attempts across many identifiers; its
tiers are higher because many people may share one address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import redis.asyncio as redis
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter


class Throttle:
    """Limits on one kind of attempt (``action``: "login", "register", "reset")."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        action: str,
        per_identifier: Sequence[RateLimitItem],
        per_address: Sequence[RateLimitItem],
    ) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{namespace}:identity:{action}-limits",
            # Shares the service's pool; limits documents the option but types options narrowly.
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._limits = {"identifier": tuple(per_identifier), "address": tuple(per_address)}

    async def seconds_to_wait(self, identifiers: Sequence[str], address: str) -> int | None:
        """Whole seconds until another attempt may be made; None when one may be made now."""
        waits = []
        for kind, key in self._keys(identifiers, address):
            for item in self._limits[kind]:
                if not await self._limiter.test(item, kind, key):
                    stats = await self._limiter.get_window_stats(item, kind, key)
                    waits.append(stats.reset_time - time.time())
        return max(1, math.ceil(max(waits))) if waits else None

    async def record_attempt(self, identifiers: Sequence[str], address: str) -> None:
        for kind, key in self._keys(identifiers, address):
            for item in self._limits[kind]:
                await self._limiter.hit(item, kind, key)

    async def forget_identifier(self, identifier: str) -> None:
        """Clear ``identifier``'s count (a successful sign-in ends its back-off)."""
        for item in self._limits["identifier"]:
            await self._limiter.clear(item, "identifier", identifier)

    @staticmethod
    def _keys(identifiers: Sequence[str], address: str) -> list[tuple[str, str]]:
        return [("address", address), *(("identifier", key) for key in identifiers)]
