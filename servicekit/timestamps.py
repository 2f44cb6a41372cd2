"""How Parley writes times: ISO-8601 in UTC with microseconds and a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_timestamp(moment: datetime) -> str:
    """``moment`` (time-zone aware) as e.g. ``2025-01-31T12:00:00.000000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
