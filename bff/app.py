"""The backend-for-frontend: browser sessions, the API proxy and the web app."""

from __future__ import annotations

from starlette.applications import Starlette

from bff.settings import BffSettings
from servicekit.app import create_service_app
from servicekit.redis_client import RedisConnection


def create_app(settings: BffSettings) -> Starlette:
    # Sessions live in Redis: without it nobody can sign in, so it gates readiness.
    return create_service_app(settings, dependencies={"redis": RedisConnection(settings.redis_url)})
