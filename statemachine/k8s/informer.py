"""Shared watches: one list+watch thread per (cluster, ResourceKey), feeding a cache and handlers.

An :class:`Informer` lists the kind, then watches from the list's resourceVersion. When the server
ends the stream normally (its ``timeoutSeconds``, or a silent close: ``DynamicClient`` does not
reconnect by itself) it re-watches from the last resourceVersion seen, BOOKMARK events included.
On 410 Gone (an ERROR event or an HTTP 410) it re-lists and emits synthetic ADDED / MODIFIED /
DELETED events for what changed while it was not watching, so handlers never miss a deletion.
Other failures back off with full jitter and try again until :meth:`Informer.stop`.

Every subscribed handler is called for every event, from the informer's thread, in order; a handler
subscribing late first gets a synthetic ADDED for every cached object (from the subscribing thread,
under the same lock, so it cannot interleave with live events). Handlers must be quick and must not
block on other threads: they typically wake a waiting VM.

It knows nothing about HTTP: ``client.py`` passes a ``lister`` and a ``streamer``. It does not poll:
the only requests are the list (at start and after 410) and one long watch at a time.
"""
from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from statemachine.errors import ClusterError, Gone
from statemachine.k8s import EventType, Obj, ResourceKey, WatchHandler
from statemachine.k8s.retry import RetryPolicy

logger = logging.getLogger("statemachine.k8s")

Lister = Callable[[], tuple[list[Obj], str]]
"""Returns the current items and the list's resourceVersion."""

Streamer = Callable[[str, int, "StreamHandle"], Iterator[Obj]]
"""(resourceVersion, timeoutSeconds, handle) → raw watch events ``{"type", "object"}``; raises
``Gone`` on 410 and other ``ClusterError`` for failures; ends when the server ends the stream."""

_BACKOFF = RetryPolicy(attempts=1_000_000, base=0.2, cap=10.0, total=float("inf"))

_QUICK_END = 0.5
"""A watch that ends sooner than this (seconds) without any event counts as a failure."""


class StreamHandle:
    """The open watch response of one informer, so :meth:`Informer.stop` can interrupt its read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resp: Any = None
        self.stopping = False

    def attach(self, resp: Any) -> None:
        with self._lock:
            self._resp = resp
            if self.stopping:
                _shutdown(resp)

    def detach(self) -> None:
        with self._lock:
            self._resp = None

    def abort(self) -> None:
        with self._lock:
            self.stopping = True
            if self._resp is not None:
                _shutdown(self._resp)


def _shutdown(resp: Any) -> None:
    """Unblock a thread reading ``resp``: shut the socket down (closing it from another thread
    could wait on locks the reader holds)."""
    conn = getattr(resp, "connection", None) or getattr(resp, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _slim(obj: Obj) -> Obj:
    """``obj`` without ``metadata.managedFields`` (as client-go's informers drop them): smrun never
    reads field ownership, and on a real server it is often the larger part of an object, which
    the cache would otherwise keep and copy on every read. Only the stream's own objects are
    edited in place; an object the caller still holds is copied (``observe``)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        del meta["managedFields"]
    return obj


def _key_of(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _older(obj: Obj, than: Obj | None) -> bool:
    """Whether ``obj`` is an older version than ``than``. resourceVersions are opaque strings to
    clients; every server we know makes them integers, and when they are not we never skip."""
    if than is None:
        return False
    try:
        return int(_rv_of(obj)) < int(_rv_of(than))
    except ValueError:
        return False


class Informer:
    """One shared list+watch of a :class:`ResourceKey` with its cache (see the module docstring)."""

    def __init__(self, key: ResourceKey, *, name: str, lister: Lister, streamer: Streamer,
                 timeout_range: tuple[int, int] = (240, 300),
                 rand: Callable[[], float] = random.random) -> None:
        self.key = key
        self.name = name
        self._lister = lister
        self._streamer = streamer
        self._timeout_range = timeout_range
        self._rand = rand
        self._cache: dict[tuple[str, str], Obj] = {}
        #: Our own writes (observe) the watch has not shown yet: a list that predates them must
        #: not drop them (see _replace). Guarded by _cache_lock.
        self._observed: dict[tuple[str, str], Obj] = {}
        self._cache_lock = threading.Lock()
        self._dispatch_lock = threading.RLock()
        self._handlers: list[WatchHandler] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._retired = False
        self._handle = StreamHandle()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self.resource_version = ""
        self.relists = 0
        """How many times the informer listed (1 at start, +1 per 410)."""

    # ------------------------------------------------------------ public API

    @property
    def synced(self) -> bool:
        """True once the first list is in the cache (and until stopped)."""
        return self._synced.is_set() and not self._stop.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def cached(self, namespace: str, name: str) -> Obj | None:
        """The cached object (shared, do not mutate), or ``None``."""
        with self._cache_lock:
            return self._cache.get((namespace, name))

    def observe(self, obj: Obj) -> None:
        """Read-your-writes: install the server's answer to our own create or patch, unless the
        cache already has a newer version. Without this a readiness check right after a create
        can see the object as absent (the watch event may still be on its way) and an
        ``object is none`` condition would pass without waiting. No handler is called: the watch
        event that follows does that.

        Also before the first list is in (an informer started just before our create): the
        write is kept aside until the watch shows it, and a list that predates it keeps it
        (:meth:`_replace`). It used to be dropped then: the list, sent before the create, came
        back without the object, and a readiness ``object is none`` held at once (under load the
        live itinerary's CreateSourceMigration was done before KubeVirt saw its migration)."""
        obj = dict(obj)
        meta = obj.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        obj.setdefault("apiVersion", self.key.api_version)
        obj.setdefault("kind", self.key.kind)
        key = _key_of(obj)
        with self._cache_lock:
            if not _older(obj, self._observed.get(key)):
                self._observed[key] = obj
            if not _older(obj, self._cache.get(key)):
                self._cache[key] = obj

    def snapshot(self) -> list[Obj]:
        with self._cache_lock:
            return list(self._cache.values())

    def subscribe(self, handler: WatchHandler) -> bool:
        """Add ``handler``; replay the cache to it as ADDED. False if this informer was retired."""
        with self._dispatch_lock:
            if self._retired:
                return False
            self._handlers.append(handler)
            if self._synced.is_set():
                for obj in self.snapshot():
                    self._call(handler, "ADDED", obj)
            return True

    def unsubscribe(self, handler: WatchHandler) -> int:
        """Remove ``handler``; returns how many handlers remain."""
        with self._dispatch_lock:
            if handler in self._handlers:
                self._handlers.remove(handler)
            return len(self._handlers)

    def retire_if_idle(self) -> bool:
        """Atomically refuse new subscribers and stop, if nobody is subscribed. True if retired."""
        with self._dispatch_lock:
            if self._handlers or self._retired:
                return False
            self._retired = True
        self.stop()
        return True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end now: sets the flag and interrupts the open watch request."""
        with self._dispatch_lock:
            self._retired = True
        self._stop.set()
        self._handle.abort()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_list:
                    items, rv = self._lister()
                    self.relists += 1
                    self._replace(items, rv)
                    self.resource_version = rv
                    need_list = False
                started = time.monotonic()
                if self._watch_once() or time.monotonic() - started >= _QUICK_END:
                    failures = 0
                else:  # ended at once with nothing: a broken server must not make us spin
                    failures += 1
                    self._stop.wait(_BACKOFF.backoff(failures, self._rand))
            except Gone:
                logger.info("watch %s: resourceVersion %s expired, re-listing",
                            self.name, self.resource_version)
                need_list = True
                failures += 1
                if failures > 1:  # repeated 410s: do not spin against a struggling server
                    self._stop.wait(_BACKOFF.backoff(failures, self._rand))
            except ClusterError as exc:
                failures += 1
                delay = _BACKOFF.backoff(failures, self._rand)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if not self._stop.is_set():
                    logger.warning("watch %s failed (%s, status %s: %s), retrying in %.2fs",
                                   self.name, type(exc).__name__, exc.status or "none", exc,
                                   delay)
                self._stop.wait(delay)
            except Exception:  # a bug must not kill the shared watch silently
                failures += 1
                logger.exception("watch %s: unexpected error", self.name)
                self._stop.wait(_BACKOFF.backoff(failures, self._rand))
        self._synced.clear()

    def _watch_once(self) -> int:
        """One watch request until the server ends it; returns how many events it carried."""
        low, high = self._timeout_range
        timeout = low + int(self._rand() * (high - low + 1)) if high > low else low
        # One handle per request so a stop() racing the open still interrupts it.
        handle = StreamHandle()
        self._handle = handle
        count = 0
        if self._stop.is_set():
            return count
        for event in self._streamer(self.resource_version, timeout, handle):
            if self._stop.is_set():
                break
            self._apply(event)
            count += 1
        return count

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        rv = _rv_of(obj)
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            logger.debug("watch %s: ignoring event type %r", self.name, kind)
            return
        _slim(obj)
        obj.setdefault("apiVersion", self.key.api_version)
        obj.setdefault("kind", self.key.kind)
        # Cache update and dispatch under one lock: a late subscriber's replay sees either both
        # or neither.
        with self._dispatch_lock:
            with self._cache_lock:
                if _older(obj, self._cache.get(_key_of(obj))):
                    # The cache already holds a newer version, written by observe() from our own
                    # create/patch answer: this event (e.g. the DELETED of an earlier incarnation)
                    # must not roll it back.
                    pass
                elif kind == "DELETED":
                    self._cache.pop(_key_of(obj), None)
                else:
                    self._cache[_key_of(obj)] = obj
                mine = self._observed.get(_key_of(obj))
                if mine is not None and not _older(obj, mine):
                    del self._observed[_key_of(obj)]  # the watch has shown it (or later)
            if rv:
                self.resource_version = rv
            self._dispatch(kind, obj)

    def _replace(self, items: list[Obj], list_rv: str = "") -> None:
        """Install a fresh list; emit events for the differences from the cache. Our own writes
        newer than the list (its resourceVersion; when versions are not integers, those the list
        lacks) are kept: the list was taken before them, and the watch will show them."""
        fresh = {_key_of(obj): _slim(obj) for obj in items}
        events: list[tuple[EventType, Obj]] = []
        with self._dispatch_lock:
            with self._cache_lock:
                for key, mine in list(self._observed.items()):
                    try:
                        after_list = int(_rv_of(mine)) > int(list_rv)
                    except ValueError:
                        after_list = key not in fresh
                    if after_list and not _older(mine, fresh.get(key)):
                        fresh[key] = mine
                    elif not after_list:
                        del self._observed[key]  # the list reflects it (or its deletion)
                old = self._cache
                for key, obj in fresh.items():
                    before = old.get(key)
                    if before is None:
                        events.append(("ADDED", obj))
                    elif _rv_of(before) != _rv_of(obj):
                        events.append(("MODIFIED", obj))
                events.extend(("DELETED", obj) for key, obj in old.items() if key not in fresh)
                self._cache = fresh
            self._synced.set()
            for kind, obj in events:
                self._dispatch(kind, obj)

    def _dispatch(self, kind: EventType, obj: Obj) -> None:
        with self._dispatch_lock:
            for handler in list(self._handlers):
                self._call(handler, kind, obj)

    def _call(self, handler: WatchHandler, kind: EventType, obj: Obj) -> None:
        try:
            handler(kind, obj)
        except Exception:
            logger.exception("watch %s: handler %r failed on %s", self.name, handler, kind)
