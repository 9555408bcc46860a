"""Structural rules of the engine package."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from statemachine.engine.adapt import flow_from_itinerary
from statemachine.engine.flow import Flow
from statemachine.engine.journal import Journal
from statemachine.engine.runtime import Runtime
from statemachine.engine.scheduler import Scheduler
from statemachine.itinerary import builtin_itineraries, load_itinerary

PACKAGE = Path(__file__).resolve().parents[2] / "statemachine"


def test_only_the_engine_runtime_imports_transitions() -> None:
    importers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if re.search(r"^\s*(from|import) transitions\b", p.read_text(), re.M))
    assert importers == ["engine/runtime.py"]


def test_machine_callbacks_are_python_callables_not_strings(tmp_path: Path) -> None:
    flow = flow_from_itinerary(load_itinerary("live"))
    rt = Runtime(plan_name="p", run_id="r", flow=flow, clusters={}, journal=Journal(tmp_path),
                 lang=None, scheduler=Scheduler(), step_timeout=1, emit=lambda e: None,  # type: ignore[arg-type]
                 io_workers=0)
    machine = rt.machine
    assert machine.auto_transitions is False and machine.has_queue and machine.send_event
    assert all(callable(cb) for cb in machine.after_state_change)
    for event in machine.events.values():
        for transitions in event.transitions.values():
            for t in transitions:
                assert all(callable(cb) for cb in (*t.before, *t.after, *t.prepare))
    assert {s.name for s in flow.states} <= set(machine.states)


@pytest.mark.parametrize("name", [n for n, _, _ in builtin_itineraries()])
def test_every_builtin_itinerary_adapts_to_a_flow(name: str) -> None:
    flow = flow_from_itinerary(load_itinerary(name))
    assert isinstance(flow, Flow) and flow.states[-1].name == "Completed"
    for state in flow.states:
        for target in state.next:
            flow.state(target.to)
