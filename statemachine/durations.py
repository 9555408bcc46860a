"""Durations as plans and itineraries write them (``30s``, ``10m``, ``1h30m``, seconds) -> seconds.

A module of its own so the plan loader can parse a plan's timeouts without importing the
itinerary language (and its template engine): ``smrun run`` and ``validate`` start connecting to
the clusters as soon as the plan is loaded (issue 17). It parses only; nothing here knows states.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_duration"]

_DURATION = re.compile(r"^(?=\d)(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> float:
    """``30s``, ``10m``, ``1h30m`` or an integer number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"not a duration: {value!r} (use 30s, 10m, 1h30m or seconds)")
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return float(h * 3600 + m * 60 + s)
