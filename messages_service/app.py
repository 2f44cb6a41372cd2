"""messages_service owns what was said: ordered history, receipts, reactions, search."""

from __future__ import annotations

from starlette.applications import Starlette

from messages_service.settings import MessagesSettings
from servicekit.app import create_service_app
from servicekit.db import Database
from servicekit.redis_client import RedisConnection


def create_app(settings: MessagesSettings) -> Starlette:
    return create_service_app(
        settings,
        dependencies={
            "database": Database(settings.database_url, pool_size=settings.database_pool_size),
            "redis": RedisConnection(settings.redis_url),
        },
    )
