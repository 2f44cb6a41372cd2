"""Typed settings read once from the environment.

A service reads its settings at start-up into a frozen dataclass and never changes them. Every
problem is collected before failing, so one start-up attempt names every bad variable at once::

    SettingsError: invalid configuration:
      DATABASE_URL: must be a postgresql:// URL, got 'mysql://…'
      PORT: must be an integer between 1 and 65535, got 'eighty'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
S = TypeVar("S", bound="ServiceSettings")
ExtraReader = Callable[["EnvironmentReader", bool], dict[str, Any]]
"""Reads a service's own settings: ``(reader, production) -> field values``."""

DEVELOPMENT: Final = "development"
PRODUCTION: Final = "production"

DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
# The client `make run` registers for service-to-service calls (parley.seed); development only.
DEVELOPMENT_SERVICE_CLIENT_ID: Final = "parley-services"
DEVELOPMENT_SERVICE_CLIENT_SECRET: Final = "parley-services-development-secret"  # noqa: S105
DEFAULT_PORTS: Final[Mapping[str, int]] = {
    "bff": 8000,
    "identity_service": 8001,
    "conversations_service": 8002,
    "messages_service": 8003,
    "realtime_service": 8004,
}


class SettingsError(Exception):
    """The environment does not describe a usable configuration."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


class EnvironmentReader:
    """Reads typed values from an environment mapping, collecting every problem it finds."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def _convert(
        self, name: str, default: T | _Required, convert: Callable[[str], T], fallback: T
    ) -> T:
        raw = self._raw(name)
        if raw is None:
            if isinstance(default, _Required):
                self.problems.append(f"{name}: is required but not set")
                return fallback
            return default
        try:
            return convert(raw)
        except ValueError as error:
            self.problems.append(f"{name}: {error}, got {_describe(raw)!r}")
            return fallback

    def is_set(self, name: str) -> bool:
        """Whether ``name`` has a non-blank value (for defaults that depend on another variable)."""
        return self._raw(name) is not None

    def text(self, name: str, default: str | _Required = REQUIRED) -> str:
        return self._convert(name, default, str, "")

    def integer(self, name: str, default: int | _Required, *, minimum: int, maximum: int) -> int:
        def convert(raw: str) -> int:
            try:
                value = int(raw)
            except ValueError:
                value = minimum - 1
            if not minimum <= value <= maximum:
                raise ValueError(f"must be an integer between {minimum} and {maximum}")
            return value

        return self._convert(name, default, convert, minimum)

    def number(
        self, name: str, default: float | _Required, *, minimum: float, maximum: float
    ) -> float:
        def convert(raw: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                value = minimum - 1
            if not minimum <= value <= maximum:
                raise ValueError(f"must be a number between {minimum} and {maximum}")
            return value

        return self._convert(name, default, convert, minimum)

    def boolean(self, name: str, default: bool | _Required) -> bool:
        def convert(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("must be true or false")

        return self._convert(name, default, convert, False)

    def choice(self, name: str, default: str | _Required, choices: Iterable[str]) -> str:
        allowed = tuple(choices)

        def convert(raw: str) -> str:
            if raw not in allowed:
                raise ValueError(f"must be one of {', '.join(allowed)}")
            return raw

        return self._convert(name, default, convert, allowed[0])

    def url(
        self, name: str, default: str | _Required, *, schemes: Iterable[str] = ("http", "https")
    ) -> str:
        allowed = tuple(schemes)

        def convert(raw: str) -> str:
            parts = urlsplit(raw)
            if parts.scheme not in allowed or not parts.netloc:
                raise ValueError(f"must be a {' or '.join(s + '://' for s in allowed)} URL")
            return raw.rstrip("/") if parts.scheme in {"http", "https"} else raw

        return self._convert(name, default, convert, "")

    def words(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return self._convert(name, default, lambda raw: tuple(raw.split()), default)

    def finish(self) -> None:
        """Raise ``SettingsError`` naming every problem found so far."""
        if self.problems:
            raise SettingsError(self.problems)


def dev_default(production: bool, value: T) -> T | _Required:
    """``value`` as the default in development; in production the variable must be set."""
    return REQUIRED if production else value


def local_service_url(service_name: str) -> str:
    """Where ``service_name`` listens in a single-machine development install."""
    return f"http://127.0.0.1:{DEFAULT_PORTS[service_name]}"


# The password in "scheme://user:password@host", which a SettingsError must not echo.
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^@\s]*@")


def _describe(value: str, limit: int = 60) -> str:
    """``value`` as an error message quotes it: without a URL password, at most ``limit`` long."""
    value = _URL_PASSWORD.sub(r"\1[redacted]@", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """What every Parley service needs: where it listens, how it logs, how it checks tokens."""

    service_name: str
    environment: str
    host: str
    port: int
    log_level: str
    log_format: str
    redis_url: str
    # Prefix for every Redis key and channel, so several installs (or test runs) share one Redis.
    redis_namespace: str
    oidc_issuer: str
    api_audience: str

    @property
    def is_production(self) -> bool:
        return self.environment == PRODUCTION


@dataclass(frozen=True, kw_only=True)
class DatabaseServiceSettings(ServiceSettings):
    """Settings of a service that owns tables."""

    database_url: str
    # Connections kept per process; small because every service runs several processes.
    database_pool_size: int


@dataclass(frozen=True, kw_only=True)
class ServiceClientSettings(ServiceSettings):
    """Settings of a service that calls other services with client-credentials tokens."""

    service_client_id: str
    service_client_secret: str = field(repr=False)


def read_service_settings(reader: EnvironmentReader, service_name: str) -> dict[str, Any]:
    """The fields of ``ServiceSettings`` from the environment, as keyword arguments."""
    environment = reader.choice("PARLEY_ENV", DEVELOPMENT, (DEVELOPMENT, PRODUCTION))
    production = environment == PRODUCTION
    return {
        "service_name": service_name,
        "environment": environment,
        "host": reader.text("HOST", "0.0.0.0" if production else "127.0.0.1"),  # noqa: S104
        "port": reader.integer("PORT", DEFAULT_PORTS[service_name], minimum=1, maximum=65535),
        "log_level": reader.choice(
            "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        ),
        "log_format": reader.choice("LOG_FORMAT", "json", ("json", "console")),
        "redis_url": reader.url(
            "REDIS_URL", REQUIRED if production else DEFAULT_REDIS_URL, schemes=("redis", "rediss")
        ),
        "redis_namespace": reader.text("REDIS_NAMESPACE", "parley"),
        "oidc_issuer": reader.url(
            "OIDC_ISSUER", dev_default(production, local_service_url("identity_service"))
        ),
        "api_audience": reader.text("API_AUDIENCE", REQUIRED if production else "parley-api"),
    }


def read_database_settings(reader: EnvironmentReader, *, production: bool) -> dict[str, Any]:
    """The fields ``DatabaseServiceSettings`` adds, as keyword arguments."""
    return {
        "database_url": reader.url(
            "DATABASE_URL",
            REQUIRED if production else DEFAULT_DATABASE_URL,
            schemes=("postgresql", "postgres", "postgresql+psycopg"),
        ),
        "database_pool_size": reader.integer("DATABASE_POOL_SIZE", 5, minimum=1, maximum=100),
    }


def read_service_client_settings(reader: EnvironmentReader, *, production: bool) -> dict[str, Any]:
    """The fields ``ServiceClientSettings`` adds, as keyword arguments."""
    return {
        "service_client_id": reader.text(
            "SERVICE_CLIENT_ID", dev_default(production, DEVELOPMENT_SERVICE_CLIENT_ID)
        ),
        "service_client_secret": reader.text(
            "SERVICE_CLIENT_SECRET", dev_default(production, DEVELOPMENT_SERVICE_CLIENT_SECRET)
        ),
    }


def load_service_settings(
    settings_class: type[S],
    service_name: str,
    environ: Mapping[str, str] | None = None,
    read_extra: ExtraReader | None = None,
) -> S:
    """Read ``settings_class`` from the environment, or raise ``SettingsError`` naming every
    problem: the common fields, the database and service-client fields when the class has them,
    then the service's own fields from ``read_extra``."""
    reader = EnvironmentReader(environ)
    values = read_service_settings(reader, service_name)
    production = values["environment"] == PRODUCTION
    if issubclass(settings_class, DatabaseServiceSettings):
        values |= read_database_settings(reader, production=production)
    if issubclass(settings_class, ServiceClientSettings):
        values |= read_service_client_settings(reader, production=production)
    if read_extra is not None:
        values |= read_extra(reader, production)
    reader.finish()
    return settings_class(**values)
