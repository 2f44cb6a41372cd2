"""Settings of realtime_service, read once at start-up."""

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


@dataclass(frozen=True, kw_only=True)
class RealtimeSettings(ServiceSettings):
    # realtime_service asks conversations_service whom each event concerns.
    conversations_url: str


def _read_realtime_settings(reader: EnvironmentReader, production: bool) -> dict[str, Any]:
    return {
        "conversations_url": reader.url(
            "CONVERSATIONS_URL", dev_default(production, local_service_url("conversations_service"))
        ),
    }


def load_settings(environ: Mapping[str, str] | None = None) -> RealtimeSettings:
    return load_service_settings(
        RealtimeSettings, "realtime_service", environ, _read_realtime_settings
    )
