"""Progress throttling of readiness waits (issue 8): ``runner.wait_ready``, ``PROGRESS_EVERY``.

The object a wait reads (a DataVolume's percentage) changes on nearly every watch event; its
``progress`` expression is evaluated, and a progress-only change reported as ``state_waiting``,
at most once per ``PROGRESS_EVERY`` seconds. A change of *what* is waited for is reported at
once, with the progress of the new object (not the old one's, held back by the throttle). The
last progress value need not be reported (the wait may end first).

A ``FakeCluster`` whose patches notify the engine's watch, driven from a thread while the engine
runs; ``PROGRESS_EVERY`` is monkeypatched so the test takes well under a second.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine import runner
from statemachine.engine.core import RunResult
from statemachine.itinerary import Itinerary
from statemachine.k8s import ObjectRef

from .fakes import FakeCluster
from .flows import engine, itinerary, plan

TEMPLATES = {
    # One object per item; `pct` plays a DataVolume's progress, `done` its phase.
    "dv.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-dv-{{ item }}", namespace: shop}
data: {pct: "{{ 'ab'[item] }}-0", done: "no"}
""",
}


def flow(tmp_path: Path, items: int) -> Itinerary:
    return itinerary(tmp_path / "progress", f"""
states:
  - name: Copy
    forEach: "{list(range(items))}"
    timeout: 10s
    actions: [{{apply: dv.yaml}}]
    readiness: {{ready: "object.data.done == 'yes'", progress: object.data.pct}}
  - name: Completed
""", TEMPLATES, name="progress")


def ref(item: int) -> ObjectRef:
    return ObjectRef("v1", "ConfigMap", "shop", f"vm-1-dv-{item}")


Waiting = tuple[float, str, str]  # (monotonic time, waiting_for, progress)


def run_while(tmp_path: Path, items: int, drive: Callable[[FakeCluster, list[Waiting],
                                                               threading.Event], None]
              ) -> tuple[RunResult, list[Waiting]]:
    """Run one VM; ``drive`` runs on a thread once the wait's first ``state_waiting`` was emitted
    and must end the wait (make every object ready)."""
    cluster = FakeCluster("c")
    waiting: list[Waiting] = []
    first = threading.Event()

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "state_waiting":
            waiting.append((time.monotonic(), e["waiting_for"], e["progress"]))
            first.set()

    def driver() -> None:
        if first.wait(5.0):
            drive(cluster, waiting, first)

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    # resync 5 s: the wait is woken by watch events only, not by the safety-net resync.
    eng = engine(tmp_path, plan("pp", ["vm-1"]), flow(tmp_path, items), cluster,
                 sinks=[on_event], resync=5.0)
    result = eng.run()
    thread.join(5.0)
    assert not thread.is_alive()
    return result, waiting


def test_progress_changes_are_reported_at_most_once_per_period(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PROGRESS_EVERY", 0.2)
    span: list[float] = []

    def drive(cluster: FakeCluster, _w: list[Waiting], _f: threading.Event) -> None:
        start = time.monotonic()
        for k in range(1, 31):  # 30 progress changes over about 0.6 s, each a watch event
            cluster.patch(ref(0), {"data": {"pct": f"a-{k}"}})
            time.sleep(0.02)
        span.append(time.monotonic() - start)
        cluster.patch(ref(0), {"data": {"done": "yes"}})

    result, waiting = run_while(tmp_path, 1, drive)

    assert [v.phase for v in result.vms] == ["Completed"]
    assert {w for _, w, _ in waiting} == {str(ref(0))}  # only progress changed
    progress = [p for _, _, p in waiting]
    assert progress[0] == "a-0" and len(set(progress)) == len(progress) >= 2  # it does move on
    assert all(p in {f"a-{k}" for k in range(31)} for p in progress)
    # Unthrottled this is ~30 events; throttled, one per 0.2 s of driving (plus the first).
    assert len(waiting) <= span[0] / 0.2 + 2, progress
    times = [t for t, _, _ in waiting]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.15, gaps  # 0.2 s apart, less the loop's own jitter


def test_a_change_of_what_is_waited_for_is_reported_at_once_with_its_progress(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Progress is never re-evaluated for time's sake here: only the change of target does it.
    monkeypatch.setattr(runner, "PROGRESS_EVERY", 60.0)
    marks: dict[str, float] = {}

    def drive(cluster: FakeCluster, waiting: list[Waiting], _f: threading.Event) -> None:
        for k in range(1, 11):
            cluster.patch(ref(0), {"data": {"pct": f"a-{k}"}})
            cluster.patch(ref(1), {"data": {"pct": f"b-{k}"}})
            time.sleep(0.01)
        marks["ready0"] = time.monotonic()
        cluster.patch(ref(0), {"data": {"done": "yes"}})  # now the wait is for item 1
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not any(str(ref(1)) in w for _, w, _ in waiting):
            time.sleep(0.005)
        cluster.patch(ref(1), {"data": {"done": "yes"}})

    result, waiting = run_while(tmp_path, 2, drive)

    assert [v.phase for v in result.vms] == ["Completed"]
    # Twenty progress changes while waiting for item 0: none reported (throttled) ...
    assert [(w, p) for _, w, p in waiting] == [
        (f"{ref(0)} (2/2 pending)", "a-0"),
        # ... but the switch to item 1 is, with item 1's current progress, not item 0's.
        (f"{ref(1)} (1/2 pending)", "b-10"),
    ]
    assert waiting[1][0] - marks["ready0"] < 1.0  # at once (the resync is 5 s, the throttle 60 s)
