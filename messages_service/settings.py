"""Settings of messages_service, read once at start-up.

| variable | default | meaning |
|---|---|---|
| ``CONVERSATIONS_URL`` | local conversations_service | who may read and write where |
| ``SERVICE_CLIENT_ID`` / ``SERVICE_CLIENT_SECRET`` | development client | its internal calls |
| ``RETENTION_DAYS`` | 365 | messages older than this are deleted (1..36500) |
| ``RETENTION_INTERVAL_SECONDS`` | 3600 | how often the retention job runs |
| ``SEND_RATE_LIMITS`` | ``30 per 10 seconds; 600 per hour`` | sends per sender (moving windows) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from limits import RateLimitItem, parse_many

from servicekit.settings import (
    DatabaseServiceSettings,
    EnvironmentReader,
    ServiceClientSettings,
    dev_default,
    load_service_settings,
    local_service_url,
)

DEFAULT_RETENTION_DAYS: Final = 365
MAX_RETENTION_DAYS: Final = 36_500  # a century: "keep everything" without overflowing dates
DEFAULT_RETENTION_INTERVAL_SECONDS: Final = 3600
# A person types a few messages a minute; a burst of 30 in 10 s is a paste-happy human or a
# runaway bot. Bots that need more get a higher limit from their operator.
DEFAULT_SEND_RATE_LIMITS: Final = "30 per 10 seconds; 600 per hour"


@dataclass(frozen=True, kw_only=True)
class MessagesSettings(DatabaseServiceSettings, ServiceClientSettings):
    # messages_service asks conversations_service who may read and write where.
    conversations_url: str
    retention_days: int
    retention_interval_seconds: int
    send_rate_limits: tuple[RateLimitItem, ...]


def _rate_limits(reader: EnvironmentReader, name: str, default: str) -> tuple[RateLimitItem, ...]:
    raw = reader.text(name, default)
    try:
        return tuple(parse_many(raw))
    except ValueError:
        reader.problems.append(f"{name}: must be rate limits like {default!r}, got {raw!r}")
        return tuple(parse_many(default))


def _read_messages_settings(reader: EnvironmentReader, production: bool) -> dict[str, Any]:
    return {
        "conversations_url": reader.url(
            "CONVERSATIONS_URL", dev_default(production, local_service_url("conversations_service"))
        ),
        "retention_days": reader.integer(
            "RETENTION_DAYS", DEFAULT_RETENTION_DAYS, minimum=1, maximum=MAX_RETENTION_DAYS
        ),
        "retention_interval_seconds": reader.integer(
            "RETENTION_INTERVAL_SECONDS",
            DEFAULT_RETENTION_INTERVAL_SECONDS,
            minimum=1,
            maximum=7 * 24 * 3600,
        ),
        "send_rate_limits": _rate_limits(reader, "SEND_RATE_LIMITS", DEFAULT_SEND_RATE_LIMITS),
    }


def load_settings(environ: Mapping[str, str] | None = None) -> MessagesSettings:
    return load_service_settings(
        MessagesSettings, "messages_service", environ, _read_messages_settings
    )
