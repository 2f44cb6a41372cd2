"""Liveness and readiness.

``/healthz`` answers as long as the process serves HTTP: a failing liveness probe gets a process
restarted, so it must not depend on anything outside the process. ``/readyz`` checks every
dependency the service really uses (database, Redis) concurrently with a short timeout, so a load
balancer stops sending traffic within seconds of a dependency failing and resumes once it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse

# Seconds; a probe that waits longer than the balancer's own timeout (typically 1–5 s) is useless.
CHECK_TIMEOUT_SECONDS: Final = 1.0

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when the dependency is usable; raises otherwise."""


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "service": request.app.state.settings.service_name})


async def run_checks(
    checks: Mapping[str, ReadinessCheck], timeout_seconds: float = CHECK_TIMEOUT_SECONDS
) -> dict[str, str]:
    """Run ``checks`` concurrently; map each name to ``ok`` or a short reason."""

    async def run_one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), timeout_seconds)
        except TimeoutError:
            return f"timed out after {timeout_seconds:g} s"
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"; reported below
            return type(error).__name__
        return "ok"

    results = await asyncio.gather(*(run_one(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


async def readyz(request: Request) -> JSONResponse:
    checks: Mapping[str, ReadinessCheck] = request.app.state.readiness_checks
    results = await run_checks(checks)
    ready = all(result == "ok" for result in results.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": results},
        status_code=200 if ready else 503,
    )
