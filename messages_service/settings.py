"""Settings of messages_service, read once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicekit.settings import (
    DatabaseServiceSettings,
    EnvironmentReader,
    dev_default,
    load_service_settings,
    local_service_url,
)


@dataclass(frozen=True, kw_only=True)
class MessagesSettings(DatabaseServiceSettings):
    # messages_service asks conversations_service who may read and write where.
    conversations_url: str


def _read_messages_settings(reader: EnvironmentReader, production: bool) -> dict[str, Any]:
    return {
        "conversations_url": reader.url(
            "CONVERSATIONS_URL", dev_default(production, local_service_url("conversations_service"))
        ),
    }


def load_settings(environ: Mapping[str, str] | None = None) -> MessagesSettings:
    return load_service_settings(
        MessagesSettings, "messages_service", environ, _read_messages_settings
    )
