"""Kubernetes Events on a simulated cluster: recording, expiry and the ``events.k8s.io/v1`` view.

- **Recording** (:func:`record`): what client-go's ``record.EventRecorder`` writes for a
  controller: a core ``v1`` Event named ``<object name>.<hex nanoseconds>`` with ``involvedObject``
  (kind, apiVersion, namespace, name, uid, resourceVersion), ``reason``, ``message``, ``type``,
  ``source {component, host}``, ``reportingComponent``/``reportingInstance``, ``count`` and
  ``firstTimestamp``/``lastTimestamp``. A repeat of the same event (same object, type, reason,
  message and component) within the TTL bumps ``count`` and ``lastTimestamp`` of the existing
  Event instead of making a new one, as the recorder's aggregation does.
- **Expiry** (:func:`configure`, :func:`sweep`): the kube-apiserver stores Events with a lease of
  ``--event-ttl`` (1 h by default), renewed on each write. Here every create or update of an Event
  schedules its deletion ``ttl`` seconds later; :func:`sweep` (called by the controller runner every
  tick and before Event reads) deletes what is due, so watchers see a ``DELETED``.
- **Two views, one storage** (:func:`to_v1`, :func:`to_core`): ``events.k8s.io/v1`` Events are the
  same stored objects with the fields renamed (apiserver-fidelity.md §9.1). The HTTP layer stores
  and filters core Events and converts each object on the way in and out (:func:`serve_v1`).

What it does not do: the recorder's spam filter and its "(combined from similar events)" message
folding; events.k8s.io ``series`` (core aggregation uses ``count``, which is what kubectl shows).
"""
from __future__ import annotations

import heapq
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from statemachine.sim.store import Obj, Store, StoreEvent, now_rfc3339

DEFAULT_TTL = 3600.0

#: events.k8s.io/v1 name ↔ core v1 name, for the fields whose name differs (§9.1).
_RENAMED = (("regarding", "involvedObject"), ("note", "message"),
            ("reportingController", "reportingComponent"), ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"), ("deprecatedCount", "count"))


class _Book:
    """Per-store state: the aggregation index and the expiry schedule."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.ttl = ttl
        self.lock = threading.Lock()
        #: aggregation key -> (namespace, event name)
        self.index: dict[tuple[str, ...], tuple[str, str]] = {}
        #: (monotonic due time, namespace, name, uid); stale entries are skipped at sweep time
        self.due: list[tuple[float, str, str, str]] = []
        self.deadline: dict[tuple[str, str], float] = {}
        self.last_nanos = 0
        store.subscribe(self._on_event)

    def _on_event(self, event: StoreEvent) -> None:
        if event.kind.kind != "Event" or event.kind.group:
            return
        md = event.obj["metadata"]
        key = (md.get("namespace", ""), md["name"])
        with self.lock:
            if event.type == "DELETED":
                self.deadline.pop(key, None)
                return
            at = time.monotonic() + self.ttl
            self.deadline[key] = at
            heapq.heappush(self.due, (at, key[0], key[1], md.get("uid", "")))


_BOOKS: weakref.WeakKeyDictionary[Store, _Book] = weakref.WeakKeyDictionary()
_BOOKS_LOCK = threading.Lock()


def configure(store: Store, ttl: float = DEFAULT_TTL) -> None:
    """Start tracking Events of ``store`` with this TTL (seconds). Call once, before serving."""
    with _BOOKS_LOCK:
        _BOOKS[store] = _Book(store, ttl)


def _book(store: Store) -> _Book:
    with _BOOKS_LOCK:
        book = _BOOKS.get(store)
        if book is None:
            book = _BOOKS[store] = _Book(store, DEFAULT_TTL)
        return book


def sweep(store: Store) -> int:
    """Delete the Events whose TTL has run out; returns how many were deleted."""
    book = _book(store)
    now = time.monotonic()
    expired: list[tuple[str, str, str]] = []
    with book.lock:
        while book.due and book.due[0][0] <= now:
            at, ns, name, uid = heapq.heappop(book.due)
            if book.deadline.get((ns, name)) == at:
                del book.deadline[(ns, name)]
                expired.append((ns, name, uid))
    for ns, name, _uid in expired:
        try:
            store.delete("Event", ns, name)
        except Exception:  # noqa: BLE001 - already gone (deleted by a client meanwhile)
            continue
    return len(expired)


def reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ObjectReference client-go's ``GetReference`` makes for ``obj``."""
    md = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind"), "namespace": md.get("namespace"), "name": md.get("name"),
           "uid": md.get("uid"), "apiVersion": obj.get("apiVersion"),
           "resourceVersion": md.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}


def record(store: Store, involved: Mapping[str, Any], etype: str, reason: str, message: str, *,
           component: str, host: str = "") -> None:
    """Record (or aggregate into) a core v1 Event about ``involved``. Never raises: events are
    informative, and a controller must not fail because one could not be written."""
    book = _book(store)
    ref = reference(involved)
    ns = ref.get("namespace") or "default"
    key = (ns, str(ref.get("uid", "")), etype, reason, message, component, host)
    stamp = now_rfc3339()
    try:
        with book.lock:
            existing = book.index.get(key)
        if existing is not None and existing in book.deadline:
            def bump(ev: Obj) -> None:
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = stamp
                ev["involvedObject"] = ref
            store.mutate("Event", existing[0], existing[1], bump)
            return
        with book.lock:
            nanos = max(time.time_ns(), book.last_nanos + 1)
            book.last_nanos = nanos
        source: dict[str, str] = {"component": component}
        if host:
            source["host"] = host
        event_name = f"{ref.get('name', 'object')}.{nanos:x}"
        body: Obj = {"metadata": {"name": event_name, "namespace": ns},
                "involvedObject": ref, "reason": reason, "message": message,
                "source": source, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                "type": etype, "eventTime": None, "reportingComponent": component,
                "reportingInstance": host}
        store.create("Event", body)
        with book.lock:
            book.index[key] = (ns, event_name)
            if len(book.index) > 50_000:  # bounded: forget the oldest half (dicts keep order)
                for old in list(book.index)[:25_000]:
                    del book.index[old]
    except Exception:  # noqa: BLE001 - see the docstring
        return


# ---------------------------------------------------------------------- events.k8s.io/v1 view
def to_v1(core: Obj) -> Obj:
    """The ``events.k8s.io/v1`` form of a stored core Event."""
    out = {k: v for k, v in core.items()}
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    for new, old in _RENAMED:
        if old in out:
            value = out.pop(old)
            if value not in (None, {}, ""):
                out[new] = value
    if not out.get("eventTime"):
        # The conversion keeps a null eventTime; events.k8s.io clients (kubectl get
        # events.v1.events.k8s.io) print the deprecated timestamps then.
        out["eventTime"] = None
    return out


def to_core(v1: Obj) -> Obj:
    """The core v1 form of an ``events.k8s.io/v1`` Event body."""
    out = {k: v for k, v in v1.items()}
    out["apiVersion"], out["kind"] = "v1", "Event"
    for new, old in _RENAMED:
        if new in out:
            out[old] = out.pop(new)
    return out


def v1_list(core_list: Obj) -> Obj:
    out = dict(core_list)
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "EventList"
    out["items"] = [to_v1(o) for o in core_list.get("items") or []]
    return out


def view_v1(body: Any) -> Any:
    """Convert a response body of the core Event storage to the ``events.k8s.io/v1`` view."""
    if not isinstance(body, dict):
        return body
    if body.get("kind") == "Event":
        return to_v1(body)
    if body.get("kind") == "EventList":
        return v1_list(body)
    return body


def core_request(body: Any, patch_type: str | None = None) -> Any:
    """Rename the fields of an ``events.k8s.io/v1`` request body (object, merge/apply patch or
    JSON patch) to their core v1 names."""
    if patch_type == "json" and isinstance(body, list):
        ops: list[Any] = []
        for op in body:
            if isinstance(op, dict):
                op = dict(op)
                for key in ("path", "from"):
                    if isinstance(op.get(key), str):
                        op[key] = _core_pointer(op[key])
            ops.append(op)
        return ops
    if not isinstance(body, dict):
        return body
    out = dict(body)
    if out.get("apiVersion") == "events.k8s.io/v1":
        out["apiVersion"] = "v1"
    for new, old in _RENAMED:
        if new in out:
            out[old] = out.pop(new)
    return out


def _core_pointer(pointer: str) -> str:
    head, sep, rest = pointer.lstrip("/").partition("/")
    renamed = dict(_RENAMED).get(head, head)
    return f"/{renamed}{sep}{rest}"
