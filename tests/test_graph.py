"""Mermaid diagrams of itineraries."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from statemachine.graph import mermaid
from statemachine.itinerary import load_itinerary

FULL = Path(__file__).parent / "data" / "itineraries" / "valid" / "full.yaml"


def test_diagram_has_every_state_start_end_and_edges() -> None:
    itinerary = load_itinerary(FULL)
    text = mermaid(itinerary)
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    for state in itinerary.state_names:
        assert any(state in line.split() for line in lines), state
    # The plan-level setup runs first, once, as a composite state; then the VMs' flow.
    assert "    [*] --> PlanSetup" in lines and "    PlanSetup --> Started" in lines
    assert '    state "setup, once per plan" as PlanSetup {' in lines
    assert "        [*] --> ExchangeCA" in lines and "        ExchangeCA --> [*]" in lines
    assert "    Completed --> [*]" in lines
    assert "    Started --> PreHook" in lines
    assert "    PreHook --> CreateDisks" in lines
    assert "    PrecopyWait --> CreateDisks : not vm.cutover" in lines
    assert "    PrecopyWait --> StopSource : otherwise" in lines
    assert "    PreHook : when HasPreHook, step Initialize" in lines
    assert "skipped" not in text


def test_skipped_states_are_marked_and_bypassed() -> None:
    itinerary = load_itinerary(FULL)
    lines = mermaid(itinerary, frozenset({"PreHook"})).splitlines()
    assert "    class PreHook skipped" in lines
    assert any(line.startswith("    classDef skipped ") for line in lines)
    assert "    note right of PreHook : skipped by predicates" in lines
    assert "    Started --> CreateDisks : skip" in lines
    assert "    class StopSource skipped" not in lines


def test_first_state_skipped_gets_a_start_bypass(tmp_path: Path) -> None:
    path = tmp_path / "hook-first.yaml"
    path.write_text("apiVersion: smrun.io/v1alpha1\nkind: Itinerary\nmetadata: {name: h}\n"
                    "spec:\n  migrationType: cold\n  states:\n"
                    "    - {name: PreHook, when: {all: [HasPreHook]}}\n"
                    "    - {name: Completed}\n")
    lines = mermaid(load_itinerary(path), frozenset({"PreHook"})).splitlines()
    assert "    [*] --> Completed : skip" in lines
    assert "    PreHook --> Completed" in lines


@pytest.mark.parametrize("name", ["cold", "warm", "live"])
def test_builtin_itineraries_draw(name: str) -> None:
    itinerary = load_itinerary(name)
    text = mermaid(itinerary, frozenset({"PreHook"}) if "PreHook" in itinerary.state_names
                   else frozenset())
    for state in itinerary.state_names:
        assert f" {state}" in text
    # Mermaid statements end at ';' and a label with one would break the diagram.
    assert ";" not in text


def test_an_itinerary_without_setup_starts_at_its_first_state() -> None:
    itinerary = load_itinerary(FULL)
    lines = mermaid(replace(itinerary, setup=replace(itinerary.setup, states=()))).splitlines()
    assert "    [*] --> Started" in lines
    assert not any("PlanSetup" in line for line in lines)
