"""The one way a duration is written for a user (ETAs in the panel and the CLI, job estimates), on both sides."""

from __future__ import annotations

import math


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m 05s``, ``1h 02m``, beyond two days ``31.6 days``; ``""`` for an unknown duration."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    whole = max(0, int(round(seconds)))
    if whole >= 48 * 3600:
        return f"{seconds / 86400:.1f} days"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")
