"""Group commit: creates are sent only after an fsync of the journal covers their intents.

The loop thread journals an intent and queues the create here with ``Journal.sync_later()``.
One flush-and-fsync runs at a time, on the I/O pool; each covers every intent appended before
it started, so the creates queued while one runs share the next one. A
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
    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._queue: list[tuple[Work, Work]] = []  # (fsync covering its intent, the write)
        self._running = False
        self._failed = False

    def submit(self, durable: Work, work: Work) -> None:
        """Send ``work`` once ``durable`` (an fsync, or a no-op when an earlier one covers it)
        and every fsync queued before it have run. Thread-safe."""
        with self._lock:
            if self._failed:
                return  # the journal failed: no create is sent any more
            self._queue.append((durable, work))
            if self._running:
                return
            self._running = True
        self._send(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._running = False
                    return
            # The journal hands out two functions (flush; flush and fsync): each runs once.
            try:
                for durable in {id(d): d for d, _ in batch}.values():
                    durable()
            except Exception:  # noqa: BLE001 - the journal recorded it and told the engine
                with self._lock:
                    self._failed, self._queue, self._running = True, [], False
                return
            for _, work in batch:
                self._send(work)

    def _send(self, work: Work) -> None:
        try:
            self._pool.submit(work)
        except RuntimeError:  # the pool is shutting down (end of run): do it here
            work()

