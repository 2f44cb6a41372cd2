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
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from servicekit.errors import EXCEPTION_HANDLERS, UnexpectedErrorMiddleware
from servicekit.health import healthz, readyz
from servicekit.logging import RequestContextMiddleware
from servicekit.metrics import MetricsMiddleware, ServiceMetrics, metrics_endpoint
from servicekit.settings import ServiceSettings


class Dependency(Protocol):
    """Something a service opens at start-up, checks for readiness and closes at shutdown."""

    async def check(self) -> None: ...

    async def close(self) -> None: ...


logger = logging.getLogger("servicekit.app")

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    routes: Sequence[BaseRoute] = (),
    dependencies: Mapping[str, Dependency] | None = None,
    middleware: Sequence[Middleware] = (),
    lifespan: Lifespan | None = None,
) -> Starlette:
    """A service app with the shared skeleton around ``routes``.

    Each dependency is stored on ``app.state`` under its name and checked by ``/readyz``;
    ``lifespan`` runs inside the shared one, for a service's own background work.
    """
    dependencies = dict(dependencies or {})
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
            for name, dependency in dependencies.items():
                try:
                    await dependency.close()
                except Exception:  # one failing close must not leave the others open
                    logger.exception("closing a dependency failed", extra={"dependency": name})

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
    for name, dependency in dependencies.items():
        setattr(app.state, name, dependency)
    return app
