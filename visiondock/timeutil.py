"""Timestamps as the stores keep them: ISO 8601 in UTC, so string order is time order."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
