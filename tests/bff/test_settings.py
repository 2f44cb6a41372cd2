"""The BFF's own settings: where cookies may be Secure-less, sign-in limits, session timeouts."""

from __future__ import annotations

import pytest

from bff.settings import load_settings
from servicekit.settings import SettingsError

PRODUCTION = {
    "PARLEY_ENV": "production",
    "REDIS_URL": "redis://cache:6379/0",
    "OIDC_ISSUER": "https://login.example.com",
    "API_AUDIENCE": "https://api.example.com",
    "OIDC_CLIENT_ID": "parley",
    "OIDC_CLIENT_SECRET": "secret",
    "SESSION_SECRET": "a-production-session-secret-of-enough-length",
    "CONVERSATIONS_URL": "http://conversations:8002",
    "MESSAGES_URL": "http://messages:8003",
    "REALTIME_URL": "http://realtime:8004",
}


def test_https_public_url_makes_cookies_secure() -> None:
    settings = load_settings(PRODUCTION | {"PUBLIC_URL": "https://chat.example.com"})

    assert settings.cookies_secure


@pytest.mark.parametrize("public_url", ["http://127.0.0.1:8000", "http://localhost:8000"])
def test_plain_http_on_loopback_is_development_without_secure_cookies(public_url: str) -> None:
    settings = load_settings({"PUBLIC_URL": public_url})

    assert not settings.cookies_secure


def test_plain_http_on_another_host_still_gets_secure_cookies_in_development() -> None:
    assert load_settings({"PUBLIC_URL": "http://192.0.2.10:8000"}).cookies_secure


def test_production_refuses_a_plain_http_public_url_off_loopback() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(PRODUCTION | {"PUBLIC_URL": "http://chat.example.com"})

    assert "PUBLIC_URL: must be an https:// URL in production" in raised.value.problems


def test_public_url_must_be_an_origin() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"PUBLIC_URL": "https://example.com/chat"})

    assert any(problem.startswith("PUBLIC_URL:") for problem in raised.value.problems)


def test_login_rate_limit_is_checked_at_start_up() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"LOGIN_RATE_LIMIT": "lots"})

    assert any(problem.startswith("LOGIN_RATE_LIMIT:") for problem in raised.value.problems)


def test_session_timeouts_default_to_a_working_day_idle_and_a_week_in_all() -> None:
    settings = load_settings({})

    assert settings.session_idle_timeout_seconds == 8 * 3600
    assert settings.session_absolute_timeout_seconds == 7 * 24 * 3600
    assert settings.login_rate_limit == "30/minute"


def test_idle_timeout_below_five_minutes_is_refused() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"SESSION_IDLE_TIMEOUT_SECONDS": "60"})

    assert any("SESSION_IDLE_TIMEOUT_SECONDS" in problem for problem in raised.value.problems)
