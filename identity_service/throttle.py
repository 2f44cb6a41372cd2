"""Sign-in throttling: failed attempts counted in Redis per account identifier and per address.

Each is limited by tiers of moving windows (``LOGIN_LIMITS_PER_ACCOUNT``, default "5 per minute;
10 per 15 minutes; 20 per hour"). The tiers make the back-off grow: a few failures cost a wait of
up to a minute, persistent failures up to an hour. A successful sign-in clears its account's
count. An identifier is counted whether or not an account has it, so the throttle reveals
nothing about which accounts exist.

Counting per address as well stops one client spraying guesses across many accounts; its tiers
are higher because many people may share one address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import redis.asyncio as redis
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter


class LoginThrottle:
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        per_account: Sequence[RateLimitItem],
        per_address: Sequence[RateLimitItem],
    ) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{namespace}:identity:login-limits",
            # Shares the service's pool; limits documents the option but types options narrowly.
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._limits = {"account": tuple(per_account), "address": tuple(per_address)}

    async def seconds_to_wait(self, account_key: str | None, address: str) -> int | None:
        """Whole seconds until another attempt may be made; None when one may be made now."""
        waits = []
        for kind, key in self._keys(account_key, address):
            for item in self._limits[kind]:
                if not await self._limiter.test(item, kind, key):
                    stats = await self._limiter.get_window_stats(item, kind, key)
                    waits.append(stats.reset_time - time.time())
        return max(1, math.ceil(max(waits))) if waits else None

    async def record_failure(self, account_key: str | None, address: str) -> None:
        for kind, key in self._keys(account_key, address):
            for item in self._limits[kind]:
                await self._limiter.hit(item, kind, key)

    async def record_success(self, account_key: str) -> None:
        for item in self._limits["account"]:
            await self._limiter.clear(item, "account", account_key)

    @staticmethod
    def _keys(account_key: str | None, address: str) -> list[tuple[str, str]]:
        keys = [("address", address)]
        if account_key is not None:
            keys.append(("account", account_key))
        return keys
