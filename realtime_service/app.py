"""realtime_service relays events from Redis to the WebSockets of the people they concern."""

from __future__ import annotations

from starlette.applications import Starlette

from realtime_service.routes import ROUTES
from realtime_service.settings import RealtimeSettings
from servicekit.app import create_service_app
from servicekit.authentication import BearerAuthentication
from servicekit.redis_client import RedisConnection


def create_app(settings: RealtimeSettings) -> Starlette:
    return create_service_app(
        settings,
        routes=ROUTES,
        dependencies={"redis": RedisConnection(settings.redis_url)},
        resources={"authentication": BearerAuthentication(settings)},
    )
