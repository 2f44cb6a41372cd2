"""Settings of the BFF, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

    return {
        "public_url": service_url("PUBLIC_URL", "bff"),
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
    }


def load_settings(environ: Mapping[str, str] | None = None) -> BffSettings:
    return load_service_settings(BffSettings, "bff", environ, _read_bff_settings)
