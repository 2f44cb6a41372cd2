"""Settings of identity_service, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.settings import DatabaseServiceSettings, load_service_settings


@dataclass(frozen=True, kw_only=True)
class IdentitySettings(DatabaseServiceSettings):
    """identity_service is the issuer named by ``OIDC_ISSUER``; it needs no settings of its own
    beyond the common and database ones yet."""


def load_settings(environ: Mapping[str, str] | None = None) -> IdentitySettings:
    return load_service_settings(IdentitySettings, "identity_service", environ)
