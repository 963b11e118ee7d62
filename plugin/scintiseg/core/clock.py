"""Time stamps as ScintiSeg writes them in results, work records and labels."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso(epoch: float | None = None) -> str:
    """UTC time with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``; now, or at ``epoch``."""
    t = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
