"""The engine's output thread: hands the journal and the progress events to the kernel.

While a run goes on, this thread flushes every ``interval`` (10 ms) by itself; the loop thread
does not even signal it. Every write(2) on the loop thread released the GIL, and getting it
back from the I/O and watch threads cost up to a switch interval: at 100 VMs 675 journal writes
took 0.2 s of the loop's time, in the middle of the bursts whose reactions it delays. Waking
this thread from the loop after each batch (an ``Event.set``, a futex wake) still cost the loop
~80 µs a time on a loaded machine (docs/performance.md, issue 17). :meth:`OutputThread.kick`
asks for a flush at once (tests, and anyone who cannot wait for the interval).

A flush that fails is the journal's to report (``Journal.flush`` marks the journal failed and
stops the run through ``on_failure``); a broken progress sink is logged and the run goes on.
What must be on disk at a given moment is not this thread's concern: an intent is fsync'ed
before its create by the group commit (``groupcommit``), a ``created`` entry is flushed by the
pool thread of the next request before it is sent (``Journal.before_request``), and the end of
the run flushes on the loop thread itself.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("statemachine.engine")


class OutputThread:
    """Runs ``flush`` on a daemon thread of its own every ``interval`` seconds, and at once when
    kicked (kicks coalesce)."""

    def __init__(self, flush: Callable[[], None], *, interval: float = 0.01,
                 name: str = "smrun-out") -> None:
        self._flush = flush
        self.interval = interval
        self._kicked = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """Ask for a flush soon (thread-safe, never blocks)."""
        self._kicked.set()

    def stop(self) -> None:
        """Let the last kicked flush finish, then end the thread (the caller flushes after)."""
        self._stopping = True
        self._kicked.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._kicked.wait(self.interval)
            self._kicked.clear()
            try:
                self._flush()
            except Exception:  # noqa: BLE001 - the journal recorded its own failure
                logger.debug("output flush failed", exc_info=True)
            if self._stopping:
                return
