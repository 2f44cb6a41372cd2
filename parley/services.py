"""The services Parley is made of, in the order they start, and how to build each one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp


@dataclass(frozen=True)
class ServiceSpec:
    """Where a service's code lives; every service package has ``settings.py`` and ``app.py``."""

    name: str
    package: str
    # Services with tables own one schema each and have alembic migrations in the package.
    schema: str | None

    def load_settings(self, environ: Mapping[str, str] | None = None) -> Any:
        module = importlib.import_module(f"{self.package}.settings")
        return module.load_settings(environ)

    def app_factory(self) -> Callable[[Any], ASGIApp]:
        module = importlib.import_module(f"{self.package}.app")
        factory: Callable[[Any], ASGIApp] = module.create_app
        return factory


# Start order: the identity provider first (others discover it), the BFF last.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("identity_service", "identity_service", "identity"),
    ServiceSpec("conversations_service", "conversations_service", "conversations"),
    ServiceSpec("messages_service", "messages_service", "messages"),
    ServiceSpec("realtime_service", "realtime_service", None),
    ServiceSpec("bff", "bff", None),
)
SERVICES_BY_NAME: dict[str, ServiceSpec] = {spec.name: spec for spec in SERVICES}
