"""Waiting in tests for something a simulated controller does a few ticks later."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Call ``check`` until it returns something truthy and return that; lookups that raise
    (an object being created or deleted) count as not yet. Fails the test at ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - NotFound and friends while objects settle
            last, value = exc, None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last})" if last else ""))
