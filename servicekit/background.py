"""Work a service repeats in the background for as long as it runs (relays, reports, clean-ups).

Every instance of a service runs the same loops, so each step must be safe to run concurrently
with its twin in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("servicekit.background")


class PeriodicTask:
    """Awaits ``step`` now and then every ``interval_seconds`` (seconds between the end of one
    step and the start of the next) until closed. A step that fails is logged and the loop goes
    on: the database or an upstream may be restarting."""

    def __init__(
        self, name: str, step: Callable[[], Awaitable[object]], interval_seconds: float
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:
                logger.exception("background step failed", extra={"task": self.name})
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Start on the running event loop (again after ``close``)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def close(self) -> None:
        """Stop, waiting for a step in progress to be cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
