"""Settings of conversations_service, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.settings import DatabaseServiceSettings, load_service_settings


@dataclass(frozen=True, kw_only=True)
class ConversationsSettings(DatabaseServiceSettings):
    """conversations_service needs only the common and database settings."""


def load_settings(environ: Mapping[str, str] | None = None) -> ConversationsSettings:
    return load_service_settings(ConversationsSettings, "conversations_service", environ)
