"""Timestamps as the stores keep them: ISO 8601 in UTC, so string order is time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def duration(seconds: float) -> str:
    """Seconds as a person reads a time left: '45 s', '3 min 10 s', '1 h 05 min'."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def utc_now_series(count: int) -> list[str]:
    """`count` timestamps from now, a microsecond apart: things stored together keep their order."""
    now = datetime.now(UTC)
    return [(now + timedelta(microseconds=n)).isoformat(timespec="microseconds") for n in range(count)]
