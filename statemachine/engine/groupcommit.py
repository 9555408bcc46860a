"""Group commit: creates are sent only after an fsync of the journal covers their intents.

The loop thread journals an intent and queues the create here with ``Journal.sync_later()``.
One flush-and-fsync runs at a time, on the group commit's own thread; each covers every intent
appended before it started, so the creates queued while one runs share the next one. A
create therefore waits for at most two fsyncs, never for the end of the loop's batch: at 100 VMs,
holding every write until the batch ended made the 50th VM of a burst wait for the other 49.

Only creates need this (after a machine crash, the intent is how undo finds an object whose
create was sent); reads, patches, deletes and Events go to the pool at once. This module does
not write the journal or decide what is durable.

If a flush-and-fsync fails (the journal's disk is full), the creates it was to cover are never
sent, nor is any create submitted afterwards: the journal reports the failure and the engine
stops (``Journal.on_failure``).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

Work = Callable[[], None]


class GroupCommit:
    """Its flush-and-fsyncs run on a thread of its own (``smrun-commit``), not on the I/O pool:
    in a burst the pool's threads are all waiting for answers, and an fsync queued behind those
    requests held every create back (intent to request 8 ms at the median, 24 ms at p90 with 50
    VMs in flight; issue 17). Writes still go to the pool."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: list[tuple[Work, Work]] = []  # (fsync covering its intent, the write)
        self._running = False  # the commit thread is draining (a new submit need not wake it)
        self._failed = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, durable: Work, work: Work) -> None:
        """Send ``work`` once ``durable`` (an fsync, or a no-op when an earlier one covers it)
        and every fsync queued before it have run. Thread-safe."""
        with self._lock:
            if self._failed or self._closed:
                return  # the journal failed (or the run is over): no create is sent any more
            self._queue.append((durable, work))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="smrun-commit",
                                                daemon=True)
                self._thread.start()
            elif not self._running:
                self._ready.notify()

    def close(self) -> None:
        """End the commit thread (what is still queued is not sent)."""
        with self._lock:
            self._closed = True
            self._queue = []
            self._ready.notify()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._running = False
                while not self._queue and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                self._running = True
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    return
            # The journal hands out two functions (flush; flush and fsync): each runs once.
            try:
                for durable in {id(d): d for d, _ in batch}.values():
                    durable()
            except Exception:  # noqa: BLE001 - the journal recorded it and told the engine
                with self._lock:
                    self._failed, self._queue = True, []
                return
            for _, work in batch:
                self._send(work)

    def _send(self, work: Work) -> None:
        try:
            self._pool.submit(work)
        except RuntimeError:  # the pool is shutting down (end of run): do it here
            work()
