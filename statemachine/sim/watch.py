"""The watch stream of the simulated API server (``GET <collection>?watch=true``).

Semantics (simulated-apiserver.md §2, items 19–22):

- ``resourceVersion`` missing, ``""`` or ``"0"``: a synthetic ``ADDED`` for every matching object,
  then live events. ``N``: only events after ``N``. ``N`` older than the retained history: one
  ``ERROR`` event carrying a 410 ``Expired`` Status, then the stream ends.
- Label and field selectors filter as on lists; an object that stops matching is sent as
  ``DELETED`` and one that starts matching as ``ADDED`` (as upstream does).
- ``timeoutSeconds`` ends the stream (the default is 30 minutes); ``allowWatchBookmarks``
  adds a ``BOOKMARK`` carrying only ``metadata.resourceVersion`` every ``bookmark_every`` seconds.
- The stream ends when the client disconnects or the server stops.

The transport (chunked encoding, sockets) is the caller's: this module only produces lines.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemachine.errors import Gone
from statemachine.sim import selectors
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Store, StoreEvent

POLL = 0.25  # how long one wait blocks before re-checking disconnects and shutdown
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class WatchRequest:
    kind: Kind
    namespace: str
    label_selector: str | None
    field_selector: str | None
    resource_version: str | None
    timeout: float = DEFAULT_TIMEOUT
    bookmarks: bool = False


def _line(etype: str, obj: dict[str, Any]) -> bytes:
    return (json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n").encode()


def expired_status(exc: Gone) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": str(exc), "reason": "Expired", "code": 410}


class _Filter:
    def __init__(self, req: WatchRequest) -> None:
        self.req = req
        self.match = selectors.combine(selectors.label_matcher(req.label_selector),
                                       selectors.field_matcher(req.field_selector))

    def _in_scope(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.req.namespace and self.req.kind.namespaced and \
                obj["metadata"].get("namespace") != self.req.namespace:
            return False
        return self.match is None or self.match(obj)

    def translate(self, ev: StoreEvent) -> str | None:
        """The event type to send for a store event, or ``None`` to skip it."""
        if ev.kind is not self.req.kind:
            return None
        now = self._in_scope(ev.obj)
        if ev.type == "DELETED":
            return "DELETED" if now or self._in_scope(ev.old) else None
        before = self._in_scope(ev.old) if ev.type == "MODIFIED" else False
        if now:
            return "MODIFIED" if before else "ADDED"
        return "DELETED" if before else None


def stream(store: Store, req: WatchRequest, send: Callable[[bytes], None],
           disconnected: Callable[[], bool], stopping: threading.Event, *,
           bookmark_every: float = 60.0) -> None:
    """Write watch events with ``send`` until timeout, disconnect, shutdown or 410."""
    flt = _Filter(req)
    deadline = time.monotonic() + req.timeout
    rv = req.resource_version
    if not rv or rv == "0":
        items, last = store.list_rv(req.kind, req.namespace, label_selector=req.label_selector,
                                    field_selector=req.field_selector)
        for obj in items:
            send(_line("ADDED", obj))
    else:
        try:
            last = int(rv)
        except ValueError:
            last = -1
        if last < 0:
            send(_line("ERROR", expired_status(Gone(f"invalid resource version: {rv}"))))
            return
    next_bookmark = time.monotonic() + bookmark_every
    while not stopping.is_set() and not store.closed:
        try:
            events = store.events_since(last)
        except Gone as exc:
            send(_line("ERROR", expired_status(exc)))
            return
        for ev in events:
            etype = flt.translate(ev)
            if etype is not None:
                send(_line(etype, ev.obj))
        if events:
            last = events[-1].resource_version
        now = time.monotonic()
        if now >= deadline:
            return
        if req.bookmarks and now >= next_bookmark:
            send(_line("BOOKMARK", {"kind": req.kind.kind, "apiVersion": req.kind.api_version,
                                    "metadata": {"resourceVersion": str(last)}}))
            next_bookmark = now + bookmark_every
        if disconnected():
            return
        store.wait_for_change(last, min(POLL, max(0.0, deadline - now)))
