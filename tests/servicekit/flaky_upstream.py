"""A real upstream for the HTTP client tests: fails its first requests with 503, then answers.

Run as ``python -m uvicorn --factory tests.servicekit.flaky_upstream:create_app``; the number of
requests to fail comes from ``FLAKY_FAILURES`` (default 0).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app() -> Starlette:
    failures_left = int(os.environ.get("FLAKY_FAILURES", "0"))
    requests_seen = 0

    async def resource(request: Request) -> Response:
        nonlocal failures_left, requests_seen
        requests_seen += 1
        if failures_left > 0:
            failures_left -= 1
            return Response(status_code=503, headers={"Retry-After": "0"})
        return JSONResponse(
            {
                "requests_seen": requests_seen,
                "request_id": request.headers.get("x-request-id"),
            }
        )

    return Starlette(routes=[Route("/resource", resource)])
