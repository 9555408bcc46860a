"""Only creates wait for the journal fsync (issue 8): ``Runtime.submit_write(durable=...)``,
``actions.offload``, ``Journal.sync_later`` and the group commit behind them.

A create (``durable``, announced by an ``intent``) is sent only after an fsync that started after
its intent was journaled has returned; a patch, a delete or a read offloaded at the same moment
is sent at once, even while that fsync is still running (an fsync can take a second on a busy
disk). Creates queued together share fsyncs (group commit); no intent, no fsync.

The tests hold the contract, not one design: they passed both when writes were sent at the end
of the loop's batch behind one fsync per batch (``_flush_writes``, a976b4a) and with
``groupcommit.GroupCommit`` (one fsync at a time, each covering every intent before it).

Tested on a bare ``Runtime`` and ``Scheduler`` with tiny tasks, not a whole engine: ``os.fsync``
is replaced by one that blocks until the test releases it, so the order is decided by the test,
not by timing. Every wait is bounded, so a regression fails instead of hanging.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine.actions import offload
from statemachine.engine.journal import Journal, ref_to_json
from statemachine.engine.runtime import Runtime
from statemachine.engine.scheduler import Scheduler, TaskGen
from statemachine.k8s import ObjectRef

from .flows import itinerary, plan

BOUND = 5.0  # seconds: the longest any step of these tests may take before it counts as a hang
REF = ref_to_json(ObjectRef("v1", "ConfigMap", "shop", "vm-1-cfg"))


@dataclass
class Recorder:
    """What ran, in order, from any thread; one Event per name for the test thread to wait on."""

    order: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: dict[str, threading.Event] = field(default_factory=dict)

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.done.setdefault(name, threading.Event())

    def note(self, name: str) -> None:
        with self.lock:
            self.order.append(name)
        self.event(name).set()

    def request(self, name: str) -> Callable[[], str]:
        def fn() -> str:
            self.note(name)
            return name
        return fn


@dataclass
class BlockingFsync:
    """``os.fsync`` that blocks until :attr:`release` is set (bounded), noting start and end."""

    rec: Recorder
    release: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def __call__(self, fd: int) -> None:
        with self.rec.lock:
            self.calls += 1
            n = self.calls
        self.rec.note("fsync-start")
        self.rec.note(f"fsync-start-{n}")
        self.release.wait(BOUND)
        self.rec.note(f"fsync-end-{n}")
        self.rec.note("fsync-end")


@dataclass
class Harness:
    rt: Runtime
    journal: Journal
    rec: Recorder
    fsync: BlockingFsync
    results: dict[str, Any]

    def spawn(self, name: str, fn: Callable[[], str], *, create: bool = False) -> None:
        """A task that offloads ``fn``; a create journals its intent first, as ``actions.create``."""
        def task() -> TaskGen:
            if create:
                self.journal.append("intent", vm="shop/vm-1", cluster="target", ref=REF, state=name)
                self.rec.note(f"intent-{name}")
            self.results[name] = yield from offload(self.rt, fn, durable=create)

        self.rt.scheduler.spawn(name, task(), lambda _t, e: self.results.setdefault(f"{name}-error", e))

    def run_loop(self) -> threading.Thread:
        loop = threading.Thread(target=self.rt.scheduler.run, name="loop", daemon=True)
        loop.start()
        return loop


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    rec = Recorder()
    fsync = BlockingFsync(rec)
    monkeypatch.setattr(os, "fsync", fsync)
    journal = Journal(tmp_path / "p")  # fsync=True: the default, and what a real run uses
    scheduler = Scheduler(resync=BOUND)
    it = itinerary(tmp_path / "it", "states: [{name: Completed}]")
    rt = Runtime(plan=plan("p", ["vm-1"]), itinerary=it, run_id="r1", clusters={},
                 journal=journal, scheduler=scheduler, step_timeout=BOUND,
                 emit=lambda _e: None, io_workers=8)
    h = Harness(rt, journal, rec, fsync, {})
    try:
        yield h
    finally:
        fsync.release.set()  # never leave a pool thread blocked, whatever the test asserted
        scheduler.stop()
        rt.close()
        journal.close()


def durable_before(order: list[str], name: str) -> bool:
    """Whether some fsync started after ``name``'s intent was journaled and returned before
    ``name`` was sent: the intent was on disk before its create reached the cluster."""
    intent, sent = order.index(f"intent-{name}"), order.index(name)
    starts = [int(e.rsplit("-", 1)[1]) for e in order[intent:] if e.startswith("fsync-start-")]
    return any(order.index(f"fsync-end-{n}") < sent for n in starts if f"fsync-end-{n}" in order)


def test_patch_delete_and_read_do_not_wait_for_the_fsync_a_create_needs(harness: Harness) -> None:
    h, rec = harness, harness.rec
    h.spawn("create", rec.request("create"), create=True)
    h.spawn("patch", rec.request("patch"))
    h.spawn("delete", rec.request("delete"))
    h.spawn("read", rec.request("read"))
    loop = h.run_loop()

    assert rec.event("fsync-start").wait(BOUND), "the intent was never fsync'ed"
    for name in ("patch", "delete", "read"):
        # Sent while the fsync is still blocked: they did not wait for it.
        assert rec.event(name).wait(BOUND), f"{name} waited for the journal fsync"
    assert not rec.event("fsync-end").is_set()
    assert not rec.event("create").is_set()  # the create is held back ...
    h.fsync.release.set()
    assert rec.event("create").wait(BOUND)
    loop.join(BOUND)
    assert not loop.is_alive()

    assert durable_before(rec.order, "create")  # ... until an fsync covering its intent returned
    assert rec.order.index("fsync-end-1") < rec.order.index("create")
    assert h.results == {"create": "create", "patch": "patch", "delete": "delete", "read": "read",
                         "create-error": None, "patch-error": None, "delete-error": None,
                         "read-error": None}
    assert h.fsync.calls == 1


def test_creates_of_one_batch_share_fsyncs_and_each_waits_for_its_own(harness: Harness) -> None:
    h, rec = harness, harness.rec
    names = [f"create-{c}" for c in "abcd"]
    for name in names:
        h.spawn(name, rec.request(name), create=True)
    loop = h.run_loop()
    assert rec.event("fsync-start").wait(BOUND)
    assert not any(rec.event(n).is_set() for n in names)  # none is sent while the fsync blocks
    h.fsync.release.set()
    loop.join(BOUND)
    assert not loop.is_alive()

    assert all(durable_before(rec.order, n) for n in names), rec.order
    # Group commit: creates queued together share an fsync (one per batch, or one per fsync
    # already running plus the next), never one each.
    assert 1 <= h.fsync.calls <= 2


def test_a_batch_without_an_intent_costs_no_fsync(harness: Harness) -> None:
    h, rec = harness, harness.rec
    h.journal.append("state_entered", vm="shop/vm-1", state="A")  # journaled, but no intent
    h.spawn("patch", rec.request("patch"))
    h.spawn("delete", rec.request("delete"))
    loop = h.run_loop()
    loop.join(BOUND)
    assert not loop.is_alive()

    assert sorted(rec.order) == ["delete", "patch"]
    assert h.fsync.calls == 0
