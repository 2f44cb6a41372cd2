"""Background loops: a failing step is logged and the loop goes on until it is closed."""

from __future__ import annotations

import asyncio

import pytest

from servicekit.background import PeriodicTask


async def test_a_failing_step_is_logged_and_the_loop_goes_on_until_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    third_call = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third_call.set()
        if calls == 1:
            raise RuntimeError("the database is restarting")

    task = PeriodicTask("test loop", step, interval_seconds=0.01)
    task.start()
    await asyncio.wait_for(third_call.wait(), 5)
    await task.close()
    stopped_at = calls
    await asyncio.sleep(0.05)

    assert calls == stopped_at
    assert [record.task for record in caplog.records] == ["test loop"]  # type: ignore[attr-defined]
