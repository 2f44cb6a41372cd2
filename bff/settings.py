"""Settings of the BFF, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import limits

from servicekit.settings import (
    EnvironmentReader,
    ServiceSettings,
    dev_default,
    load_service_settings,
    local_service_url,
)

DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
# Bytes; itsdangerous signs with HMAC-SHA1/256, and a key shorter than this is guessable.
MINIMUM_SESSION_SECRET_LENGTH = 32
# A browser session ends after this long without a request (seconds; a working day)…
DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS = 8 * 3600
# …and this long after sign-in whatever happens (seconds; a week). Either way the provider's
# own session usually makes signing in again a single redirect.
DEFAULT_SESSION_ABSOLUTE_TIMEOUT_SECONDS = 7 * 24 * 3600
# Sign-ins started per client IP: generous for a shared office NAT, tight for a script.
DEFAULT_LOGIN_RATE_LIMIT = "30/minute"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, kw_only=True)
class BffSettings(ServiceSettings):
    public_url: str
    oidc_client_id: str
    oidc_client_secret: str
    oidc_scopes: tuple[str, ...]
    session_secret: str
    identity_url: str
    conversations_url: str
    messages_url: str
    realtime_url: str
    session_idle_timeout_seconds: int
    session_absolute_timeout_seconds: int
    login_rate_limit: str

    @property
    def is_local_http(self) -> bool:
        """Whether the BFF is served over plain HTTP on this machine (development only)."""
        parts = urlsplit(self.public_url)
        return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS

    @property
    def cookies_secure(self) -> bool:
        """Whether cookies are ``Secure`` and ``__Host-`` prefixed: always, unless on loopback."""
        return not self.is_local_http


def _read_bff_settings(reader: EnvironmentReader, production: bool) -> dict[str, Any]:
    session_secret = reader.text(
        "SESSION_SECRET", dev_default(production, "development-only-session-key-not-a-secret")
    )
    if session_secret and len(session_secret) < MINIMUM_SESSION_SECRET_LENGTH:
        reader.problems.append(
            f"SESSION_SECRET: must be at least {MINIMUM_SESSION_SECRET_LENGTH} characters"
        )

    def service_url(variable: str, service_name: str) -> str:
        return reader.url(variable, dev_default(production, local_service_url(service_name)))

    public_url = service_url("PUBLIC_URL", "bff")
    parts = urlsplit(public_url)
    if public_url and (parts.path or parts.query):
        reader.problems.append("PUBLIC_URL: must be an origin such as https://chat.example.com")
    elif production and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        # Session cookies over plain HTTP could be read by anyone on the network.
        reader.problems.append("PUBLIC_URL: must be an https:// URL in production")

    login_rate_limit = reader.text("LOGIN_RATE_LIMIT", DEFAULT_LOGIN_RATE_LIMIT)
    try:
        limits.parse(login_rate_limit)
    except ValueError:
        reader.problems.append(
            f"LOGIN_RATE_LIMIT: must look like '30/minute', got {login_rate_limit!r}"
        )

    idle_timeout = reader.integer(
        "SESSION_IDLE_TIMEOUT_SECONDS",
        DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS,
        minimum=300,  # well above the minute in which activity is recorded (bff.sessions)
        maximum=30 * 24 * 3600,
    )
    absolute_timeout = reader.integer(
        "SESSION_ABSOLUTE_TIMEOUT_SECONDS",
        DEFAULT_SESSION_ABSOLUTE_TIMEOUT_SECONDS,
        minimum=60,
        maximum=90 * 24 * 3600,
    )

    return {
        "public_url": public_url,
        "oidc_client_id": reader.text("OIDC_CLIENT_ID", dev_default(production, "parley-bff")),
        "oidc_client_secret": reader.text(
            "OIDC_CLIENT_SECRET", dev_default(production, "parley-bff-development-secret")
        ),
        "oidc_scopes": reader.words("OIDC_SCOPES", DEFAULT_SCOPES),
        "session_secret": session_secret,
        # Only set when identity_service is the provider; an external one has no user directory
        # of Parley's, so none is required in production.
        "identity_url": reader.url(
            "IDENTITY_URL", "" if production else local_service_url("identity_service")
        ),
        "conversations_url": service_url("CONVERSATIONS_URL", "conversations_service"),
        "messages_url": service_url("MESSAGES_URL", "messages_service"),
        "realtime_url": service_url("REALTIME_URL", "realtime_service"),
        "session_idle_timeout_seconds": idle_timeout,
        "session_absolute_timeout_seconds": absolute_timeout,
        "login_rate_limit": login_rate_limit,
    }


def load_settings(environ: Mapping[str, str] | None = None) -> BffSettings:
    return load_service_settings(BffSettings, "bff", environ, _read_bff_settings)
