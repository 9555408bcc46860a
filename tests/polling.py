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


def record_values(store: Any, kind: str, namespace: str, name: str,
                  value: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """Every distinct value ``value(obj)`` takes on one object of a simulated ``store``, in order,
    from the store's own commits (its subscription), including the object's last snapshot when
    it is deleted. The list grows in the background; read it after a ``wait_for``.

    Decision: a test that polls an object sees only the values that last longer than its poll
    interval, and under load a controller can walk an object through two phases, or delete it,
    between two polls; asserting on the order of phases must not depend on that."""
    seen: list[Any] = []

    def on_commit(event: Any) -> None:  # under the store's lock: cheap, and no store calls
        md = event.obj.get("metadata") or {}
        if event.kind.kind != kind or md.get("name") != name or \
                (md.get("namespace") or "") != namespace:
            return
        current = value(event.obj)
        if not seen or seen[-1] != current:
            seen.append(current)
    store.subscribe(on_commit)
    return seen
