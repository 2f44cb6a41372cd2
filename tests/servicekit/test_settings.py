"""Settings: sensible defaults in development, every problem named at once in production."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from bff.settings import load_settings as load_bff_settings
from conversations_service.settings import load_settings as load_conversations_settings
from identity_service.settings import load_settings as load_identity_settings
from messages_service.settings import load_settings as load_messages_settings
from parley.cli import main
from realtime_service.settings import load_settings as load_realtime_settings
from servicekit.settings import SettingsError

SettingsLoader = Callable[[Mapping[str, str]], Any]

LOADERS: dict[str, SettingsLoader] = {
    "bff": load_bff_settings,
    "identity_service": load_identity_settings,
    "conversations_service": load_conversations_settings,
    "messages_service": load_messages_settings,
    "realtime_service": load_realtime_settings,
}
DEVELOPMENT_PORTS = {
    "bff": 8000,
    "identity_service": 8001,
    "conversations_service": 8002,
    "messages_service": 8003,
    "realtime_service": 8004,
}
SERVICES_WITH_TABLES = ("identity_service", "conversations_service", "messages_service")

COMMON_PRODUCTION_VARIABLES = {"REDIS_URL", "OIDC_ISSUER", "API_AUDIENCE"}
REQUIRED_IN_PRODUCTION = {
    "bff": COMMON_PRODUCTION_VARIABLES
    | {
        "PUBLIC_URL",
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET",
        "SESSION_SECRET",
        "CONVERSATIONS_URL",
        "MESSAGES_URL",
        "REALTIME_URL",
    },
    "identity_service": COMMON_PRODUCTION_VARIABLES
    | {"DATABASE_URL", "IDENTITY_SESSION_SECRET", "SMTP_URL"},
    "conversations_service": COMMON_PRODUCTION_VARIABLES | {"DATABASE_URL"},
    "messages_service": COMMON_PRODUCTION_VARIABLES
    | {"DATABASE_URL", "CONVERSATIONS_URL", "SERVICE_CLIENT_ID", "SERVICE_CLIENT_SECRET"},
    "realtime_service": COMMON_PRODUCTION_VARIABLES | {"CONVERSATIONS_URL"},
}


def settings_error(loader: SettingsLoader, environ: Mapping[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as raised:
        loader(environ)
    return raised.value


def named_variables(error: SettingsError) -> set[str]:
    """The variables a SettingsError complains about (each problem reads "NAME: reason")."""
    return {problem.split(":", 1)[0] for problem in error.problems}


@pytest.mark.parametrize("service_name", LOADERS)
def test_every_service_starts_in_development_with_an_empty_environment(service_name: str) -> None:
    settings = LOADERS[service_name]({})

    assert settings.service_name == service_name
    assert settings.environment == "development"
    assert not settings.is_production
    assert settings.port == DEVELOPMENT_PORTS[service_name]
    assert settings.host == "127.0.0.1"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.oidc_issuer == "http://127.0.0.1:8001"


@pytest.mark.parametrize("service_name", SERVICES_WITH_TABLES)
def test_services_with_tables_default_to_the_local_postgres(service_name: str) -> None:
    settings = LOADERS[service_name]({})

    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/postgres"


def test_the_bff_reaches_every_service_on_its_local_port_by_default() -> None:
    settings = load_bff_settings({})

    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.identity_url == "http://127.0.0.1:8001"
    assert settings.conversations_url == "http://127.0.0.1:8002"
    assert settings.messages_url == "http://127.0.0.1:8003"
    assert settings.realtime_url == "http://127.0.0.1:8004"


@pytest.mark.parametrize("service_name", LOADERS)
def test_production_names_every_missing_variable_at_once(service_name: str) -> None:
    error = settings_error(LOADERS[service_name], {"PARLEY_ENV": "production"})

    assert named_variables(error) == REQUIRED_IN_PRODUCTION[service_name]
    for variable in REQUIRED_IN_PRODUCTION[service_name]:
        assert f"{variable}: is required but not set" in str(error)


def test_production_starts_when_every_required_variable_is_set() -> None:
    settings = load_conversations_settings(
        {
            "PARLEY_ENV": "production",
            "DATABASE_URL": "postgresql://parley@db:5433/parley",
            "REDIS_URL": "rediss://cache:6380/1",
            "OIDC_ISSUER": "https://login.example.com/realms/parley/",
            "API_AUDIENCE": "https://api.parley.example.com",
        }
    )

    assert settings.is_production
    assert settings.host == "0.0.0.0"  # noqa: S104 - production listens on every interface
    assert settings.database_url == "postgresql://parley@db:5433/parley"
    assert settings.redis_url == "rediss://cache:6380/1"
    # A trailing slash is dropped so URLs can be joined with "/path" safely.
    assert settings.oidc_issuer == "https://login.example.com/realms/parley"


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("PORT", "eighty", "must be an integer between 1 and 65535"),
        ("PORT", "70000", "must be an integer between 1 and 65535"),
        ("PORT", "0", "must be an integer between 1 and 65535"),
        ("OIDC_ISSUER", "login.example.com", "must be a http:// or https:// URL"),
        ("DATABASE_URL", "mysql://db/parley", "must be a postgresql:// or postgres://"),
        ("REDIS_URL", "http://cache:6379", "must be a redis:// or rediss:// URL"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("PARLEY_ENV", "staging", "must be one of development, production"),
        ("DATABASE_POOL_SIZE", "1000", "must be an integer between 1 and 100"),
    ],
)
def test_an_invalid_value_is_named_with_its_variable_and_reason(
    variable: str, value: str, reason: str
) -> None:
    error = settings_error(load_conversations_settings, {variable: value})

    assert named_variables(error) == {variable}
    assert f"{variable}: {reason}" in str(error)
    assert repr(value) in str(error)


def test_every_invalid_value_is_named_in_one_error() -> None:
    error = settings_error(
        load_messages_settings,
        {"PORT": "eighty", "REDIS_URL": "localhost", "CONVERSATIONS_URL": "ftp://files"},
    )

    assert named_variables(error) == {"PORT", "REDIS_URL", "CONVERSATIONS_URL"}


def test_a_rejected_url_is_quoted_without_its_password() -> None:
    error = settings_error(
        load_conversations_settings,
        {"DATABASE_URL": "postgresql+asyncpg://parley:hunter2@db:5432/parley"},
    )

    assert "DATABASE_URL" in str(error)
    assert "hunter2" not in str(error)
    assert "parley:[redacted]@db" in str(error)


def test_a_short_session_secret_is_refused() -> None:
    error = settings_error(load_bff_settings, {"SESSION_SECRET": "too-short"})

    assert named_variables(error) == {"SESSION_SECRET"}
    assert "SESSION_SECRET: must be at least 32 characters" in str(error)
    assert "too-short" not in str(error)


def test_settings_cannot_be_changed_after_loading() -> None:
    settings = load_conversations_settings({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 9999  # type: ignore[misc]
    assert settings.port == 8002


def test_oidc_scopes_default_to_openid_profile_email_and_offline_access() -> None:
    assert load_bff_settings({}).oidc_scopes == ("openid", "profile", "email", "offline_access")


def test_oidc_scopes_can_be_overridden_as_a_space_separated_list() -> None:
    settings = load_bff_settings({"OIDC_SCOPES": "openid  email\tparley:chat"})

    assert settings.oidc_scopes == ("openid", "email", "parley:chat")


def test_cli_reports_bad_settings_on_stderr_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_ENV", "development")
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("SESSION_SECRET", "too-short")

    exit_code = main(["serve", "bff"])

    stderr = capsys.readouterr().err
    assert exit_code == 2
    assert stderr.startswith("parley: invalid configuration:")
    assert "PORT: must be an integer between 1 and 65535" in stderr
    assert "SESSION_SECRET: must be at least 32 characters" in stderr
    assert "Traceback" not in stderr


def test_conversations_service_asks_the_embedded_directory_only_without_external_provider() -> None:
    assert load_conversations_settings({}).identity_url == "http://127.0.0.1:8001"
    external = load_conversations_settings({"OIDC_ISSUER": "https://login.example.com"})
    assert external.identity_url is None
    named = load_conversations_settings(
        {"OIDC_ISSUER": "https://login.example.com", "IDENTITY_URL": "http://directory:8001"}
    )
    assert named.identity_url == "http://directory:8001"


def test_service_client_credentials_are_required_in_production_when_a_directory_is_named() -> None:
    error = settings_error(
        load_conversations_settings,
        {"PARLEY_ENV": "production", "IDENTITY_URL": "http://identity_service:8001"},
    )
    assert {"SERVICE_CLIENT_ID", "SERVICE_CLIENT_SECRET"} <= named_variables(error)
