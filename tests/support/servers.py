"""Real HTTP servers for tests: an ASGI app served by uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from parley.embedded import free_port
from servicekit.app import WEBSOCKET_MAX_FRAME_BYTES

__all__ = ["free_port", "serve_in_loop", "serve_in_thread"]


def _config(app: ASGIApp, port: int, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "log_level": "warning",
        "lifespan": "auto",
        "ws_max_size": WEBSOCKET_MAX_FRAME_BYTES,
    }
    return uvicorn.Config(app, **(options | overrides))


@contextlib.asynccontextmanager
async def serve_in_loop(
    app: ASGIApp, port: int | None = None, **uvicorn_options: Any
) -> AsyncIterator[str]:
    """Serve ``app`` on the running event loop; yields its base URL. ``uvicorn_options``
    override the server's configuration (``http="h11"``, ``proxy_headers=False``, …)."""
    port = port or free_port()
    server = uvicorn.Server(_config(app, port, **uvicorn_options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` from a thread with its own event loop; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(_config(app, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"test server on port {port} failed to start")
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
