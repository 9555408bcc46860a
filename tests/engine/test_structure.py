"""Structural rules of the engine package, and the state machine built from an itinerary's graph."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from statemachine.engine.journal import Journal, VmRecord
from statemachine.engine.runtime import PENDING, Runtime, VmModel, legal_moves
from statemachine.engine.scheduler import Scheduler
from statemachine.errors import IllegalTransition
from statemachine.itinerary import (TERMINAL_STATES, Itinerary, builtin_itineraries, flow_edges,
                                    load_itinerary)

from .flows import plan, vm

PACKAGE = Path(__file__).resolve().parents[2] / "statemachine"


def test_only_the_engine_runtime_imports_transitions() -> None:
    importers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if re.search(r"^\s*(from|import) transitions\b", p.read_text(), re.M))
    assert importers == ["engine/runtime.py"]


def runtime(tmp_path: Path, it: Itinerary) -> Runtime:
    return Runtime(plan=plan("p", ["vm-1"]), itinerary=it, run_id="r", clusters={},
                   journal=Journal(tmp_path), scheduler=Scheduler(), step_timeout=1,
                   emit=lambda e: None, io_workers=0)


def test_machine_callbacks_are_python_callables_not_strings(tmp_path: Path) -> None:
    it = load_itinerary("live")
    machine = runtime(tmp_path, it).machine
    assert machine.auto_transitions is False and machine.has_queue and machine.send_event
    assert all(callable(cb) for cb in machine.after_state_change)
    for event in machine.events.values():
        for transitions in event.transitions.values():
            for t in transitions:
                assert all(callable(cb) for cb in (*t.before, *t.after, *t.prepare))
                assert all(callable(c.func) for c in t.conditions)
    assert {s.name for s in it.states} <= set(machine.states)


@pytest.mark.parametrize("name", [n for n, _, _ in builtin_itineraries()])
def test_the_machine_has_exactly_the_itinerarys_edges(name: str, tmp_path: Path) -> None:
    """The same edge function ``smrun graph`` draws, plus resume/retry self-loops and the moves
    to the terminal states; nothing else."""
    it = load_itinerary(name)
    machine = runtime(tmp_path, it).machine
    edges = {(t.source, t.dest) for ts in machine.events["go"].transitions.values() for t in ts}
    assert edges == legal_moves(it)
    drawn = {(e.source, e.target) for group in (it.states, it.setup.states)
             for e in flow_edges(group)}
    assert drawn <= edges
    names = [s.name for s in it.states]
    extra = edges - drawn
    assert all(src == dst or dst in TERMINAL_STATES or src == PENDING for src, dst in extra), \
        sorted(e for e in extra if not (e[0] == e[1] or e[1] in TERMINAL_STATES or e[0] == PENDING))
    # No way from a state straight back to an earlier one unless a `next` entry says so.
    for src, dst in drawn:
        if src in names and dst in names and names.index(dst) < names.index(src):
            assert any(n.to == dst for n in it.state(src).next)


def test_an_illegal_move_raises_an_internal_error(tmp_path: Path) -> None:
    it = load_itinerary("live")
    rt = runtime(tmp_path, it)
    model = VmModel(rt, "shop/vm-1", vm("vm-1"), VmRecord("shop/vm-1"))
    rt.add(model)
    model.move("Started")
    assert model.state == "Started"
    model.move("Started")  # re-entering (resume, retry) is legal
    with pytest.raises(IllegalTransition, match="no move from Started to WaitForStateTransfer"):
        model.move("WaitForStateTransfer")
    assert model.state == "Started"
    with pytest.raises(IllegalTransition):
        model.move("NoSuchState")
    model.move("Canceled")  # the terminal moves are legal from anywhere
    assert model.state == "Canceled"


def test_a_resumed_vm_starts_at_its_journaled_state(tmp_path: Path) -> None:
    it = load_itinerary("live")
    rt = runtime(tmp_path, it)
    rec = VmRecord("shop/vm-1", predicates={}, state="CreateTargetMigration")
    model = VmModel(rt, "shop/vm-1", vm("vm-1"), rec)
    rt.add(model)
    assert model.state == "CreateTargetMigration"
    model.move("WaitForTargetMigration")
    assert model.state == "WaitForTargetMigration"
