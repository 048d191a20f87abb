"""The injected clock. Everything that schedules or dispatches takes ``now``; only the outermost
callers (CLI, flows) read the real time, through ``utcnow()``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant; a naive value is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
