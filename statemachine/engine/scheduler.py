"""One loop thread that runs many cooperative tasks, woken by watch events and timers.

Each VM's migration is a generator (a *task*) that yields :class:`Wait` when it needs the world to
change: an object to change on a cluster, a deadline, or both. The loop keeps a timer heap and an
index of waiters by object; watch handlers (called on the informers' threads) only put the changed
object's key on a queue, so the loop wakes exactly the tasks waiting on it, within milliseconds.
A periodic resync wakes every waiting task as a safety net (a lost watch event only delays a VM
by one resync period). There is no thread per VM and no polling loop per VM.

This module knows nothing about itineraries, clusters or journals.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# (cluster name, kind, namespace, name): apiVersion is left out on purpose, so "v1" and "core/v1"
# spellings of one object cannot miss each other.
ObjKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class Wait:
    """What a task waits for: any change of ``objects``, or the monotonic time ``until``."""

    objects: tuple[ObjKey, ...] = ()
    until: float | None = None


TaskGen = Generator[Wait, None, None]

# Deferred work (``Scheduler.when_idle``) runs only after the loop has waited this long for an
# event in vain: between the steps of a burst the queue is often empty for a moment while the
# I/O pool sends requests, and rendering ahead there would delay the burst's next wake-ups.
# Decision: 2 ms. A piece of deferred work costs ~1 ms and delays what arrives meanwhile by at
# most that, while each render it saves comes off a burst that every later VM waits behind;
# waiting for 10 ms of quiet left almost nothing rendered ahead at 100 VMs (42 of ~360 creates
# against ~360 with 2 ms): events from 50 VMs in flight rarely leave such a gap.
IDLE_AFTER = 0.002


@dataclass(eq=False)
class Task:
    name: str
    gen: TaskGen
    on_done: Callable[[Task, BaseException | None], None]
    wait: Wait | None = None
    token: int = 0
    done: bool = False
    pending_throw: BaseException | None = None


class Scheduler:
    """Runs tasks on the calling thread (:meth:`run`) until :meth:`stop` or no task is left."""

    def __init__(self, *, resync: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 hook_interval: float = 0.25) -> None:
        self.resync = resync
        # Tick hooks cost O(1) per run (one stat of the cancel file), so they run far more often
        # than the resync, whose wake-up costs O(VMs): cancel reacts in a quarter second.
        self.hook_interval = min(hook_interval, resync)
        self.clock = clock
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Task, int]] = []
        self._seq = itertools.count()
        self._waiters: dict[ObjKey, set[Task]] = {}
        self._ready: list[Task] = []
        self._tasks: set[Task] = set()
        self._stopped = False
        # An error that must stop every task at once (the journal cannot be written): set by
        # fail() or by a task raising an exception whose class has ``stops_run = True``; the
        # tasks are left where they are, as a kill would leave them, and run() re-raises it.
        self.fatal: BaseException | None = None
        self.tick_hooks: list[Callable[[], None]] = []   # called every hook_interval (cancel file...)
        self.idle_hooks: list[Callable[[], None]] = []   # called after each batch of steps
        # Work that may wait (rendering ahead): run one at a time, only once the loop has had
        # nothing to do for IDLE_AFTER seconds, so it never delays a task that is ready.
        self._later: deque[Callable[[], None]] = deque()

    # -- called from any thread ------------------------------------------------------------------
    def notify(self, key: ObjKey) -> None:
        """An object changed (thread-safe; called by watch handlers)."""
        self._queue.put(("obj", key))

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._queue.put(("call", fn))

    def stop(self) -> None:
        self._queue.put(("stop", None))

    def when_idle(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread when it has nothing else to do (loop thread only)."""
        self._later.append(fn)

    def fail(self, exc: BaseException) -> None:
        """Stop with ``exc`` (thread-safe): no task takes another step; run() raises ``exc``."""
        if self.fatal is None:
            self.fatal = exc
        self._stopped = True  # read before every step, so the current batch stops too
        self._queue.put(("stop", None))

    # -- called on the loop thread -----------------------------------------------------------------
    def spawn(self, name: str, gen: TaskGen,
              on_done: Callable[[Task, BaseException | None], None]) -> Task:
        task = Task(name, gen, on_done)
        self._tasks.add(task)
        self._ready.append(task)
        return task

    def throw(self, task: Task, exc: BaseException) -> None:
        """Raise ``exc`` inside the task at its current wait (used for cancel)."""
        if task.done:
            return
        task.pending_throw = exc
        self._wake(task)

    def wake_all(self) -> None:
        for task in list(self._tasks):
            if task.wait is not None:
                self._wake(task)

    @property
    def tasks(self) -> Iterable[Task]:
        return tuple(self._tasks)

    def run(self) -> None:
        next_resync = self.clock() + self.resync
        next_hooks = self.clock() + self.hook_interval
        while not self._stopped and (self._tasks or self._ready):
            self._run_ready()
            if self._stopped or not self._tasks:
                break
            now = self.clock()
            timeout = min(next_resync, next_hooks) - now
            if self._timers:
                timeout = min(timeout, self._timers[0][0] - now)
            if self._later and timeout > IDLE_AFTER:
                if not self._drain(IDLE_AFTER):
                    self._run_later()  # nothing came: do one piece of deferred work
            else:
                self._drain(max(timeout, 0.0))
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                _, _, task, token = heapq.heappop(self._timers)
                if token == task.token and not task.done:
                    self._wake(task)
            if now >= next_hooks:
                next_hooks = now + self.hook_interval
                for hook in self.tick_hooks:
                    hook()
            if now >= next_resync:
                next_resync = now + self.resync
                self.wake_all()
        if self.fatal is not None:
            raise self.fatal

    # -- internals ---------------------------------------------------------------------------------
    def _run_later(self) -> None:
        fn = self._later.popleft()
        try:
            fn()
        except Exception:  # noqa: BLE001 - deferred work is an optimisation: never fatal
            logger.exception("deferred work failed")

    def _drain(self, timeout: float) -> bool:
        """Handle what the queue holds, waiting up to ``timeout`` for the first item; whether
        there was any."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return False
        while True:
            kind, payload = item
            if kind == "obj":
                for task in tuple(self._waiters.get(payload, ())):
                    self._wake(task)
            elif kind == "call":
                payload()
            elif kind == "stop":
                self._stopped = True
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return True

    def _wake(self, task: Task) -> None:
        if task.wait is None:
            if task.pending_throw is not None and task not in self._ready:
                self._ready.append(task)
            return
        for key in task.wait.objects:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(task)
                if not waiters:
                    del self._waiters[key]
        task.wait = None
        task.token += 1
        self._ready.append(task)

    def _run_ready(self) -> None:
        while self._ready:
            batch, self._ready = self._ready, []
            for task in batch:
                if self._stopped:
                    return
                if not task.done and task.wait is None:
                    self._step(task)
            for hook in self.idle_hooks:
                hook()

    def _step(self, task: Task) -> None:
        thrown: BaseException | None = None
        try:
            if task.pending_throw is not None:
                thrown, task.pending_throw = task.pending_throw, None
                wait = task.gen.throw(thrown)
            else:
                wait = next(task.gen)
        except StopIteration:
            self._finish(task, None)
            return
        except Exception as e:  # noqa: BLE001 - a task's bug must not stop every other VM
            if getattr(e, "stops_run", False):
                self.fail(e)
                return
            if e is not thrown:  # our own throw into a task that had not started is no crash
                logger.exception("task %s crashed", task.name)
            self._finish(task, e)
            return
        task.wait = wait
        for key in wait.objects:
            self._waiters.setdefault(key, set()).add(task)
        if wait.until is not None:
            heapq.heappush(self._timers, (wait.until, next(self._seq), task, task.token))
        if not wait.objects and wait.until is None:
            self._wake(task)  # a bare yield: just let others run

    def _finish(self, task: Task, error: BaseException | None) -> None:
        task.done = True
        self._tasks.discard(task)
        task.on_done(task, error)
