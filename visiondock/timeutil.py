"""Timestamps as the stores keep them: ISO 8601 in UTC, so string order is time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_now_series(count: int) -> list[str]:
    """`count` timestamps from now, a microsecond apart: things stored together keep their order."""
    now = datetime.now(UTC)
    return [(now + timedelta(microseconds=n)).isoformat(timespec="microseconds") for n in range(count)]
