"""identity_service is Parley's embedded OpenID Provider and user directory."""

from __future__ import annotations

from starlette.applications import Starlette

from identity_service.settings import IdentitySettings
from servicekit.app import create_service_app
from servicekit.db import Database
from servicekit.redis_client import RedisConnection


def create_app(settings: IdentitySettings) -> Starlette:
    return create_service_app(
        settings,
        dependencies={
            "database": Database(settings.database_url, pool_size=settings.database_pool_size),
            "redis": RedisConnection(settings.redis_url),
        },
    )
