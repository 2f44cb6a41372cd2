"""The Starlette application every Parley service is built on.

``create_service_app`` gives each service the same skeleton, so a reader who knows one service
knows them all: request ids and JSON access logs, Prometheus metrics, problem+json errors,
``/healthz``, ``/readyz`` over the service's real dependencies, ``/metrics``, and a lifespan that
closes those dependencies on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from servicekit.errors import EXCEPTION_HANDLERS, UnexpectedErrorMiddleware
from servicekit.health import healthz, readyz
from servicekit.logging import RequestContextMiddleware
from servicekit.metrics import MetricsMiddleware, ServiceMetrics, metrics_endpoint
from servicekit.settings import ServiceSettings


class Resource(Protocol):
    """Something a service opens at start-up and closes at shutdown."""

    async def close(self) -> None: ...


class Dependency(Resource, Protocol):
    """A resource the service cannot work without: ``/readyz`` checks it."""

    async def check(self) -> None: ...


logger = logging.getLogger("servicekit.app")

# Bytes. Parley's frames are small JSON objects; a larger frame is refused with close code 1009.
WEBSOCKET_MAX_FRAME_BYTES: Final = 64 * 1024

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    routes: Sequence[BaseRoute] = (),
    dependencies: Mapping[str, Dependency] | None = None,
    resources: Mapping[str, Resource] | None = None,
    middleware: Sequence[Middleware] = (),
    lifespan: Lifespan | None = None,
) -> Starlette:
    """A service app with the shared skeleton around ``routes``.

    Each dependency and resource is stored on ``app.state`` under its name and closed at
    shutdown; ``/readyz`` checks the dependencies. ``lifespan`` runs inside the shared one, for a
    service's own background work.
    """
    dependencies = dict(dependencies or {})
    closeables: dict[str, Resource] = {**dependencies, **(resources or {})}
    metrics = ServiceMetrics(settings.service_name)

    @contextlib.asynccontextmanager
    async def service_lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            for name, resource in closeables.items():
                try:
                    await resource.close()
                except Exception:  # one failing close must not leave the others open
                    logger.exception("closing a resource failed", extra={"resource": name})

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *routes,
        ],
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(UnexpectedErrorMiddleware),
            *middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=service_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.readiness_checks = {name: dep.check for name, dep in dependencies.items()}
    for name, resource in closeables.items():
        setattr(app.state, name, resource)
    return app
