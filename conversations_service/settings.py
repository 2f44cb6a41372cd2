"""Settings of conversations_service, read once at start-up.

``IDENTITY_URL`` is where the people directory (identity_service) answers ``GET /api/users/{id}``;
conversations_service asks it whether a user id it has never seen names a real person (see
``conversations_service.directory``). In development without ``OIDC_ISSUER`` it defaults to
the local identity_service; otherwise it is optional: with an external OpenID Provider there is
no identity_service, and people become known by calling the API once. The service calls the
directory with a client-credentials token (``SERVICE_CLIENT_ID`` / ``SERVICE_CLIENT_SECRET``),
so those are required in production only when ``IDENTITY_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from servicekit.settings import (
    DEVELOPMENT_SERVICE_CLIENT_ID,
    DEVELOPMENT_SERVICE_CLIENT_SECRET,
    REQUIRED,
    DatabaseServiceSettings,
    EnvironmentReader,
    load_service_settings,
    local_service_url,
)

# Seconds an invitation stays acceptable: a week, long enough to span a holiday weekend.
DEFAULT_INVITATION_LIFETIME_SECONDS: Final = 7 * 24 * 3600
MAX_INVITATION_LIFETIME_SECONDS: Final = 90 * 24 * 3600


@dataclass(frozen=True, kw_only=True)
class ConversationsSettings(DatabaseServiceSettings):
    """The common and database settings, plus the people directory and invitation lifetime."""

    # None: no identity_service to ask; only principals that have called the API are known.
    identity_url: str | None
    service_client_id: str
    service_client_secret: str = field(repr=False)
    invitation_lifetime_seconds: int


def _read_conversations_settings(reader: EnvironmentReader, production: bool) -> dict[str, Any]:
    embedded_provider = not production and not reader.is_set("OIDC_ISSUER")
    identity_url = reader.url(
        "IDENTITY_URL", local_service_url("identity_service") if embedded_provider else ""
    )
    # In production the development client is never a fallback: set both, or need neither.
    needed_in_production = REQUIRED if identity_url else ""
    return {
        "identity_url": identity_url or None,
        "service_client_id": reader.text(
            "SERVICE_CLIENT_ID",
            needed_in_production if production else DEVELOPMENT_SERVICE_CLIENT_ID,
        ),
        "service_client_secret": reader.text(
            "SERVICE_CLIENT_SECRET",
            needed_in_production if production else DEVELOPMENT_SERVICE_CLIENT_SECRET,
        ),
        "invitation_lifetime_seconds": reader.integer(
            "INVITATION_LIFETIME_SECONDS",
            DEFAULT_INVITATION_LIFETIME_SECONDS,
            minimum=1,
            maximum=MAX_INVITATION_LIFETIME_SECONDS,
        ),
    }


def load_settings(environ: Mapping[str, str] | None = None) -> ConversationsSettings:
    return load_service_settings(
        ConversationsSettings, "conversations_service", environ, _read_conversations_settings
    )
