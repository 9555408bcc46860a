"""Buffered journal and progress output (issue 8): written once per loop batch, never lost.

- ``Journal.append`` keeps every entry in the process until ``flush``/``sync``/``read``;
  ``sync_later`` costs an fsync only when an ``intent`` was appended since the last sync; the
  engine flushes at the end of each batch, from its output thread, never with a write(2) on the
  loop thread while the run goes on; no request leaves the process before every ``created``
  entry appended ahead of it is on disk.
- ``JsonLines`` and ``PlainLines`` write nothing visible until ``flush``; the engine flushes
  every sink that has a ``flush`` method, the last time after ``run_finished``.

The journal is read back from disk with ``read_entries`` (what a resumed run would see).
"""
from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine.core import Engine
from statemachine.itinerary import Itinerary
from statemachine.engine.journal import Journal, read_entries, ref_to_json
from statemachine.engine.progress import JsonLines, PlainLines
from statemachine.engine.scheduler import Scheduler
from statemachine.k8s import ObjectRef

from .fakes import FakeCluster
from .flows import engine, itinerary, plan

REF = ref_to_json(ObjectRef("v1", "ConfigMap", "shop", "vm-1-cfg"))


def on_disk(journal: Journal) -> list[dict[str, Any]]:
    return list(read_entries(journal.path))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``os.fsync`` call's fd (the call itself still happens)."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)
    monkeypatch.setattr(os, "fsync", counting)
    return calls


# -- Journal ------------------------------------------------------------------------------------------
def test_ordinary_entries_reach_the_file_on_flush(tmp_path: Path) -> None:
    j = Journal(tmp_path / "p")
    first = j.append("run_started", run="r1", vms=["shop/vm-1"])
    second = j.append("state_entered", vm="shop/vm-1", state="A")
    assert on_disk(j) == []
    j.flush()
    assert on_disk(j) == [first, second]
    third = j.append("state_completed", vm="shop/vm-1", state="A")
    assert on_disk(j) == [first, second]
    j.flush()
    assert on_disk(j) == [first, second, third]
    j.close()


def test_sync_and_read_also_write_the_buffer_out(tmp_path: Path) -> None:
    j = Journal(tmp_path / "p", fsync=False)
    a = j.append("state_entered", vm="shop/vm-1", state="A")
    j.sync()
    assert on_disk(j) == [a]
    b = j.append("state_entered", vm="shop/vm-1", state="B")
    assert on_disk(j) == [a]
    replay = j.read()  # the journal's own reader sees what it appended
    assert replay.vms["shop/vm-1"].state == "B"
    assert on_disk(j) == [a, b]
    j.close()


def test_append_itself_never_writes_not_even_a_created_entry(tmp_path: Path) -> None:
    j = Journal(tmp_path / "p")
    intent = j.append("intent", vm="shop/vm-1", cluster="target", ref=REF, state="A")
    created = j.append("created", vm="shop/vm-1", cluster="target", ref=REF, state="A")
    assert on_disk(j) == []  # the engine's loop thread appends; the writes are made elsewhere
    j.flush()
    assert on_disk(j) == [intent, created]
    j.close()


def test_entries_are_encoded_by_the_flushing_thread_in_the_order_appended(tmp_path: Path) -> None:
    encoded_on: list[str] = []

    class Noted:
        def __str__(self) -> str:  # json.dumps(default=str) calls this while encoding
            encoded_on.append(threading.current_thread().name)
            return "noted"

    j = Journal(tmp_path / "p")
    first = j.append("outputs", vm="shop/vm-1", state="A", values={"x": Noted()})
    second = j.append("state_entered", vm="shop/vm-1", state="B")
    assert encoded_on == []  # append (the loop thread) only keeps the entry
    flusher = threading.Thread(target=j.flush, name="flusher")
    flusher.start()
    flusher.join()
    assert encoded_on == ["flusher"]
    assert on_disk(j) == [{**first, "values": {"x": "noted"}}, second]
    j.close()


def test_sync_later_costs_an_fsync_only_after_an_intent(tmp_path: Path, fsyncs: list[int]) -> None:
    j = Journal(tmp_path / "p")
    entered = j.append("state_entered", vm="shop/vm-1", state="A")
    nothing = j.sync_later()
    assert on_disk(j) == []  # no I/O on the caller's (the loop's) thread
    nothing()
    assert on_disk(j) == [entered]  # the returned function flushes, even when no fsync is owed
    assert fsyncs == []

    intent = j.append("intent", vm="shop/vm-1", cluster="target", ref=REF, state="A")
    durable = j.sync_later()
    assert on_disk(j) == [entered]
    assert fsyncs == []  # deferred to the caller (the I/O pool), not done on the loop thread
    assert durable is not nothing and j.sync_later() is nothing  # one owed fsync, handed out once
    durable()
    assert on_disk(j) == [entered, intent] and len(fsyncs) == 1

    j.append("created", vm="shop/vm-1", cluster="target", ref=REF, state="A")
    j.sync_later()()  # no new intent since the last one was made durable
    assert len(fsyncs) == 1

    j.append("intent", vm="shop/vm-1", cluster="target", ref=REF, state="B")
    j.sync()  # a sync covers the pending intent ...
    assert len(fsyncs) == 2
    j.sync_later()()  # ... so nothing is owed afterwards
    assert len(fsyncs) == 2
    j.close()


def test_sync_later_never_fsyncs_a_journal_without_fsync(tmp_path: Path, fsyncs: list[int]) -> None:
    j = Journal(tmp_path / "p", fsync=False)
    intent = j.append("intent", vm="shop/vm-1", cluster="target", ref=REF, state="A")
    j.sync_later()()
    assert fsyncs == [] and on_disk(j) == [intent]
    j.close()


def test_an_owed_fsync_after_close_does_nothing_and_close_synced(tmp_path: Path,
                                                                fsyncs: list[int]) -> None:
    j = Journal(tmp_path / "p")
    intent = j.append("intent", vm="shop/vm-1", cluster="target", ref=REF, state="A")
    durable = j.sync_later()
    j.close()
    assert len(fsyncs) == 1 and on_disk(j) == [intent]
    durable()  # the pool ran it late: no error, nothing more to do
    assert len(fsyncs) == 1


def test_after_sync_the_file_holds_every_entry(tmp_path: Path, fsyncs: list[int]) -> None:
    j = Journal(tmp_path / "p")
    written = [j.append("run_started", run="r1", vms=["shop/vm-1"])]
    for i in range(200):  # more than fits one small write, fewer than the 64 KiB buffer
        written.append(j.append("state_entered", vm="shop/vm-1", state=f"S{i}"))
        written.append(j.append("outputs", vm="shop/vm-1", state=f"S{i}", values={"i": i}))
    assert len(on_disk(j)) < len(written)
    j.sync()
    assert on_disk(j) == written
    assert len(fsyncs) == 1  # group commit: one fsync for all of them
    j.close()


# -- the engine's batches -------------------------------------------------------------------------
def timer_flow(tmp_path: Path) -> Itinerary:
    """States that only wait: no cluster write, so nothing but the loop's batch end flushes."""
    wait = "actions: [{wait: {seconds: '0.03'}}]"
    return itinerary(tmp_path / "timers", f"""
states:
  - {{name: A, {wait}}}
  - {{name: B, {wait}}}
  - {{name: C, {wait}}}
  - name: Completed
""", name="timers")


def make_engine(tmp_path: Path, names: list[str], sinks: list[Any], name: str) -> Engine:
    p = plan(name, names)
    return engine(tmp_path, p, timer_flow(tmp_path), FakeCluster("c"), sinks=sinks,
                  journal=Journal(tmp_path / p.name, fsync=False))


def test_the_engine_flushes_the_journal_at_the_end_of_each_batch(tmp_path: Path) -> None:
    seen: dict[str, list[tuple[str, str]]] = {}
    path = tmp_path / "batches" / "journal.jsonl"

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "state_completed":
            seen[e["state"]] = [(x["type"], x.get("state", "")) for x in read_entries(path)]

    (vm,) = make_engine(tmp_path, ["vm-1"], [on_event], "batches").run().vms
    assert vm.phase == "Completed"
    assert set(seen) == {"A", "B", "C"}
    # When B completes (after its timer, a later batch), the entries of the batches before are
    # on disk: the previous state's entry and B's own, which was written before B waited.
    for previous, state in (("A", "B"), ("B", "C")):
        assert ("state_entered", previous) in seen[state], seen[state]
        assert ("state_completed", previous) in seen[state], seen[state]
        assert ("state_entered", state) in seen[state], seen[state]
    assert ("vm_started", "") in seen["A"] and ("state_entered", "A") in seen["A"]


CREATING = """
states:
  - name: Make
    actions: [{apply: cm.yaml}]
  - name: Change
    actions:
      - patch: {object: {apiVersion: v1, kind: ConfigMap, namespace: shop, name: "{{ vm.name }}-cfg"},
                type: merge, patch: {data: {changed: "yes"}}}
  - name: Completed
"""
CM = {"cm.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-cfg", namespace: shop}
"""}


def test_no_request_leaves_before_an_earlier_created_entry_is_on_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No flush after the loop's batches or ticks at all: only the rule for `created` writes it.
    original = Engine.flush_outputs

    def only_final(self: Engine, *, at_most_every: float = 0.0, wait: bool = True) -> None:
        if wait:
            original(self, at_most_every=at_most_every, wait=wait)
    monkeypatch.setattr(Engine, "flush_outputs", only_final)
    path = tmp_path / "made" / "journal.jsonl"
    seen: list[list[tuple[str, str]]] = []
    cluster = FakeCluster("c")
    real_patch = cluster.patch

    def patch(*args: Any, **kwargs: Any) -> Any:  # on an I/O pool thread, as the request leaves
        seen.append([(x["type"], x.get("state", "")) for x in read_entries(path)])
        return real_patch(*args, **kwargs)
    cluster.patch = patch  # type: ignore[method-assign]

    it = itinerary(tmp_path / "creating", CREATING, CM, name="creating")
    (vm,) = engine(tmp_path, plan("made", ["vm-1"]), it, cluster).run().vms
    assert vm.phase == "Completed"
    assert len(seen) == 1 and ("created", "Make") in seen[0]
    assert ("state_entered", "Change") in seen[0]  # and everything appended before it


def test_a_sink_flushed_off_the_loop_shows_no_event_before_the_journal_entries_ahead_of_it() -> None:
    stream = FlushRecordingStream()
    sink = JsonLines(stream)
    sink(EVENTS[0])
    at_first: list[str] = []
    sink.flush(first=lambda: at_first.append(stream.getvalue()))
    assert at_first == [""]  # the journal is flushed after the events were taken, before they show
    assert json.loads(stream.visible) == EVENTS[0]


def test_no_write_on_the_loop_thread_while_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = threading.current_thread()
    running = threading.Event()
    on_loop: list[bytes] = []
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if running.is_set() and threading.current_thread() is loop:
            on_loop.append(bytes(data[:80]))
        return real_write(fd, data)
    monkeypatch.setattr(os, "write", write)
    original = Scheduler.run

    def run(self: Scheduler) -> None:
        running.set()
        try:
            original(self)
        finally:
            running.clear()
    monkeypatch.setattr(Scheduler, "run", run)
    out = tmp_path / "events.jsonl"
    with out.open("w") as stream:
        p = plan("quiet", ["vm-1", "vm-2"])
        it = itinerary(tmp_path / "creating", CREATING, CM, name="creating")
        result = engine(tmp_path, p, it, FakeCluster("c"), sinks=[JsonLines(stream)],
                        journal=Journal(tmp_path / p.name)).run()
    assert result.exit_code == 0
    assert on_loop == []
    entries = on_disk(Journal(tmp_path / p.name))
    assert [e["type"] for e in entries].count("created") == 2
    events = [json.loads(x) for x in out.read_text().splitlines()]
    assert events[-1]["event"] == "run_finished" and len(events) > 10


class FlushCounting:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.flushes = 0
        self.flushed_count: list[int] = []  # how many events had arrived at each flush

    def __call__(self, e: dict[str, Any]) -> None:
        self.events.append(e)

    def flush(self) -> None:
        self.flushes += 1
        self.flushed_count.append(len(self.events))


def test_the_engine_flushes_sinks_that_can_flush(tmp_path: Path) -> None:
    counting = FlushCounting()
    out = io.StringIO()
    plain_out = FlushRecordingStream()
    plain = PlainLines(plain_out)
    no_flush: list[dict[str, Any]] = []  # a plain callable is still fed, and never asked to flush
    result = make_engine(tmp_path, ["vm-1", "vm-2"],
                         [counting, JsonLines(out), plain, no_flush.append], "sinks").run()
    assert result.exit_code == 0

    assert counting.flushes >= 1
    assert counting.flushed_count[-1] == len(counting.events)  # the last flush after run_finished
    assert counting.events[-1]["event"] == "run_finished"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == counting.events == no_flush
    assert plain_out.visible.splitlines()[-1].startswith("plan sinks: finished: 2 completed")


# -- progress renderers -----------------------------------------------------------------------------
class FlushRecordingStream(io.StringIO):
    """A stream that remembers what had been written at each ``flush`` (what a reader of a
    block-buffered pipe would have seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.visible = ""

    def flush(self) -> None:
        self.visible = self.getvalue()
        super().flush()


EVENTS: list[dict[str, Any]] = [
    {"event": "run_started", "plan": "p", "run": "r1", "vms": 1, "message": ""},
    {"event": "vm_started", "plan": "p", "vm": "shop/vm-1", "state": "Pending", "message": ""},
    {"event": "state_entered", "plan": "p", "vm": "shop/vm-1", "state": "A", "step": "Copy",
     "message": ""},
    {"event": "state_waiting", "plan": "p", "vm": "shop/vm-1", "state": "A", "message": "disk",
     "progress": "40%"},
    {"event": "vm_succeeded", "plan": "p", "vm": "shop/vm-1", "state": "Completed", "message": ""},
    {"event": "run_finished", "plan": "p", "message": "1 completed", "completed": 1},
]


def test_json_lines_writes_nothing_until_flush_then_every_event_in_order() -> None:
    stream = FlushRecordingStream()
    sink = JsonLines(stream)
    for e in EVENTS[:3]:
        sink(e)
    assert stream.getvalue() == "" and stream.visible == ""
    sink.flush()
    assert [json.loads(x) for x in stream.visible.split("\n")[:-1]] == EVENTS[:3]
    assert stream.visible.endswith("\n")
    for e in EVENTS[3:]:
        sink(e)
    assert stream.getvalue() == stream.visible  # nothing new until the next flush
    sink.flush()
    sink.flush()  # an empty batch writes nothing (no blank line)
    assert [json.loads(x) for x in stream.getvalue().split("\n")[:-1]] == EVENTS


def test_plain_lines_are_visible_only_after_flush_one_per_event_in_order() -> None:
    stream = FlushRecordingStream()
    sink = PlainLines(stream)
    for e in EVENTS:
        sink(e)
    assert stream.visible == ""
    sink.flush()
    assert stream.visible.splitlines() == [
        "plan p: run r1 started (1 VMs)",
        "shop/vm-1: A [Copy]",
        "shop/vm-1: A: disk (40%)",
        "shop/vm-1: Completed",
        "plan p: finished: 1 completed",
    ]
