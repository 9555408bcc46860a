"""The watch stream of the simulated API server (``GET <collection>?watch=true``).

Semantics (apiserver-fidelity.md §4):

- Start: ``resourceVersion`` missing, ``""`` or ``"0"``: a synthetic ``ADDED`` for every matching
  object, then live events. ``N``: only events after ``N``; ``N`` older than the kind's retained
  history (``history.py``): one ``ERROR`` event carrying the 410 ``Expired`` Status, then the stream
  ends; ``N`` newer than the store: wait up to 3 s, then one 504 ``ERROR`` event.
- ``sendInitialEvents=true`` (with ``resourceVersionMatch=NotOlderThan``): ADDED for the state (as
  of now, or once the store reached ``N``), then, with bookmarks allowed, a ``BOOKMARK`` annotated
  ``k8s.io/initial-events-end: "true"`` carrying that state's resourceVersion. ``false``: no
  synthetic events at all, even without a resourceVersion.
- Label and field selectors filter as on lists; an object that stops matching is sent as
  ``DELETED`` and one that starts matching as ``ADDED`` (as upstream does).
- ``timeoutSeconds`` ends the stream cleanly (the default is 30 minutes). With
  ``allowWatchBookmarks`` a ``BOOKMARK`` carrying only ``metadata.resourceVersion`` goes out every
  ``bookmark_every`` seconds (upstream: every minute) and 2 s before the timeout, so a client
  resumes from a fresh version instead of an expired one.
- The stream ends when the client disconnects or the server stops.

Each watcher wakes only for events of its kind. The transport (chunked encoding, sockets) and the
object encoding (``transform``, e.g. Tables) are the caller's: this module produces lines.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemachine.errors import ClusterError, Gone
from statemachine.sim import paging, selectors
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Store, StoreEvent

POLL = 0.25  # how long one wait blocks before re-checking disconnects and shutdown
DEFAULT_TIMEOUT = 1800.0  # upstream: a random time between --min-request-timeout and twice it
BOOKMARK_EVERY = 60.0
#: A bookmark goes out this long before the watch's deadline (upstream: 2 s).
PRE_TIMEOUT_BOOKMARK = 2.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class WatchRequest:
    kind: Kind
    namespace: str
    label_selector: str | None
    field_selector: str | None
    resource_version: str | None
    timeout: float = DEFAULT_TIMEOUT
    bookmarks: bool = False
    #: ``None``: not sent (legacy start); ``True``/``False``: the watch-list forms.
    send_initial_events: bool | None = None


def default_timeout() -> float:
    """The timeout of a watch that sent no ``timeoutSeconds``."""
    return DEFAULT_TIMEOUT * (1 + random.random())


def _line(etype: str, obj: dict[str, Any]) -> bytes:
    return (json.dumps({"type": etype, "object": obj}, separators=(",", ":")) + "\n").encode()


def error_status(exc: ClusterError) -> dict[str, Any]:
    """The Status an ERROR event carries for ``exc``."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": str(exc),
                            "reason": exc.reason or "InternalError", "code": exc.status or 500}
    details = getattr(exc, "status_details", None)
    if details:
        body["details"] = details
    return body


class _Filter:
    def __init__(self, req: WatchRequest) -> None:
        self.req = req
        self.match = selectors.combine(selectors.label_matcher(req.label_selector),
                                       selectors.field_matcher(req.field_selector))

    def in_scope(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.req.namespace and self.req.kind.namespaced and \
                obj["metadata"].get("namespace") != self.req.namespace:
            return False
        return self.match is None or self.match(obj)

    def translate(self, ev: StoreEvent) -> str | None:
        """The event type to send for a store event, or ``None`` to skip it."""
        now = self.in_scope(ev.obj)
        if ev.type == "DELETED":
            return "DELETED" if now or self.in_scope(ev.old) else None
        before = self.in_scope(ev.old) if ev.type == "MODIFIED" else False
        if now:
            return "MODIFIED" if before else "ADDED"
        return "DELETED" if before else None


def _initial_state(store: Store, req: WatchRequest, flt: _Filter) -> tuple[list[Any], int]:
    state, rv = store.snapshot(req.kind)
    items = [obj for key, obj in sorted(state.items()) if flt.in_scope(obj)]
    return items, rv


def stream(store: Store, req: WatchRequest, send: Callable[[bytes], None],
           disconnected: Callable[[], bool], stopping: threading.Event, *,
           bookmark_every: float = BOOKMARK_EVERY, transform: Transform | None = None) -> None:
    """Write watch events with ``send`` until timeout, disconnect, shutdown or an error event."""
    flt = _Filter(req)
    started = time.monotonic()
    deadline = started + req.timeout
    # As upstream, no pre-timeout bookmark for a watch shorter than the lead time.
    bookmark_deadline = deadline - PRE_TIMEOUT_BOOKMARK \
        if req.timeout > PRE_TIMEOUT_BOOKMARK else float("inf")
    encode = transform or (lambda obj: obj)

    def bookmark(rv: int, annotations: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if annotations:
            meta["annotations"] = annotations
        send(_line("BOOKMARK", encode({"kind": req.kind.kind,
                                       "apiVersion": req.kind.api_version, "metadata": meta})))

    rv_text = req.resource_version or ""
    try:
        wanted = paging.parse_resource_version(rv_text)
        if wanted > store.resource_version:
            paging.wait_until_reached(store, wanted)
    except ClusterError as exc:
        send(_line("ERROR", error_status(exc)))
        return
    if req.send_initial_events or (req.send_initial_events is None and wanted == 0):
        items, last = _initial_state(store, req, flt)
        for obj in items:
            send(_line("ADDED", encode(obj)))
        if req.send_initial_events and req.bookmarks:
            bookmark(last, {INITIAL_EVENTS_END: "true"})
    elif wanted == 0:
        last = store.resource_version
    else:
        last = wanted
    next_bookmark = started + bookmark_every
    while not stopping.is_set() and not store.closed:
        try:
            events, current = store.watch_batch(req.kind, last)
        except Gone as exc:
            send(_line("ERROR", error_status(exc)))
            return
        for ev in events:
            etype = flt.translate(ev)
            if etype is not None:
                send(_line(etype, encode(ev.obj)))
        last = max(last, current)
        now = time.monotonic()
        if now >= deadline or not store.serves(req.kind):  # its CRD was deleted or changed
            return
        if req.bookmarks and (now >= next_bookmark or now >= bookmark_deadline):
            bookmark(last)
            next_bookmark = now + bookmark_every
            if now >= bookmark_deadline:
                bookmark_deadline = float("inf")  # one pre-timeout bookmark per watch
        if disconnected():
            return
        wake = min(deadline, next_bookmark if req.bookmarks else deadline,
                   bookmark_deadline if req.bookmarks else deadline)
        store.wait_for_change(last, min(POLL, max(0.0, wake - now)), kind=req.kind)
