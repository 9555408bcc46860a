"""Draw an itinerary as a Mermaid ``stateDiagram-v2`` (``smrun graph``).

Every state is drawn with its linear edge to the next listed state and its ``next`` edges
labelled with their ``when``; ``[*]`` marks the start and the ends (``Completed``, and the
implicit ``Failed`` and ``Canceled``, whose notes say what undo does and where the commit point
is). Optional states (with a ``when``) are dashed, with ``skip`` edges around them. Labels are
never cut. The plan-level
``setup`` states, when there are any, are a composite state the VMs' flow starts after. States skipped
by predicates (``skipped``) get ``class <State> skipped`` and a note saying so, with the bypass
edge that the run takes around them. Our own text output: transitions' diagram support needs
graphviz and knows nothing of predicates. It draws; it does not validate (load first).
"""
from __future__ import annotations

import re

from statemachine.itinerary import Itinerary, StateSpec, flow_edges

__all__ = ["mermaid"]

_SKIPPED_STYLE = "fill:#f4f4f4,stroke:#9e9e9e,stroke-dasharray:5 5,color:#9e9e9e"
_OPTIONAL_STYLE = "stroke-dasharray:3 3"


def mermaid(itinerary: Itinerary, skipped: frozenset[str] = frozenset()) -> str:
    """The Mermaid source of ``itinerary``'s state diagram; ``skipped`` states are marked."""
    states = itinerary.states
    lines = ["stateDiagram-v2"]
    title = itinerary.description or itinerary.name
    lines.append(f"    %% {itinerary.name}: {_label(title)}")
    for state in states:
        text = _describe(state)
        if text:
            lines.append(f"    {state.name} : {text}")
    first = next((s.name for s in states if s.name not in skipped), states[0].name)
    start = _setup(itinerary, lines)
    lines.append(f"    {start} --> {states[0].name}")
    if first != states[0].name:
        lines.append(f"    {start} --> {first} : skip")
    conditional = {s.name for s in states if s.next}
    for edge in flow_edges(states):
        if edge.kind == "next":
            label = f" : {_label(edge.label)}" if edge.label else ""
            lines.append(f"    {edge.source} --> {edge.target}{label}")
        elif edge.kind == "linear":
            label = " : otherwise" if edge.source in conditional else ""
            lines.append(f"    {edge.source} --> {edge.target}{label}")
        elif not skipped:
            # No plan: every way around an optional state (one with `when`) is drawn.
            lines.append(f"    {edge.source} --> {edge.target} : skip")
        elif edge.source not in skipped and _bypasses(states, edge.source, edge.target, skipped):
            lines.append(f"    {edge.source} --> {edge.target} : skip")
    if states[-1].name == "Completed":
        lines.append("    Completed --> [*]")
    _ends(itinerary, lines)
    optional = [s.name for s in states if s.when is not None and s.name not in skipped]
    if optional:
        lines.append(f"    classDef optional {_OPTIONAL_STYLE}")
        for name in optional:
            lines.append(f"    class {name} optional")
    marked = [s.name for s in states if s.name in skipped]
    if marked:
        lines.append(f"    classDef skipped {_SKIPPED_STYLE}")
        for name in marked:
            lines.append(f"    class {name} skipped")
            lines.append(f"    note right of {name} : skipped by predicates")
    return "\n".join(lines) + "\n"


def _ends(itinerary: Itinerary, lines: list[str]) -> None:
    """The implicit ``Failed`` and ``Canceled`` ends, what undo does there, and the commit point.

    Any state may fail or be canceled, so these are notes rather than an edge from every state
    (which would hide the flow)."""
    undone = [s.name for s in itinerary.states if s.undo]
    undo = (f"undo runs for the entered states that have one, last first ({', '.join(undone)})"
            if undone else "no state has undo")
    commit = itinerary.commit
    after = (f", except past the commit point (after {commit.after}, once its condition holds)"
             "∶ then nothing is undone, and a cancel finishes the run") if commit is not None else ""
    lines.append(f"    Failed : {_label('any state may fail (an error, readiness failed or timed out); ' + undo + after)}")
    lines.append(f"    Canceled : {_label('smrun cancel, at any state; ' + undo + after)}")
    lines.append("    Failed --> [*]")
    lines.append("    Canceled --> [*]")
    if commit is not None:
        lines.append(f"    note right of {commit.after} : "
                     f"{_label('commit point: once ' + commit.condition.source.strip() + ' holds, a failure no longer undoes')}")


def _setup(itinerary: Itinerary, lines: list[str]) -> str:
    """Draw ``spec.setup`` (run once per plan before any VM) as a composite state; returns where
    the VMs' flow starts from: the setup's box, or ``[*]`` when there is none."""
    setup = itinerary.setup.states
    if not setup:
        return "[*]"
    taken = {s.name for s in (*itinerary.states, *setup)}
    box = next(n for n in ("PlanSetup", "PlanSetup_", "PlanSetup__") if n not in taken)
    lines.append(f'    state "setup, once per plan" as {box} {{')
    for state in setup:
        text = _describe(state)
        if text:
            lines.append(f"        {state.name} : {text}")
    lines.append(f"        [*] --> {setup[0].name}")
    for before, after in zip(setup, setup[1:]):
        lines.append(f"        {before.name} --> {after.name}")
    lines.append(f"        {setup[-1].name} --> [*]")
    lines.append("    }")
    lines.append(f"    [*] --> {box}")
    return box


def _bypasses(states: tuple[StateSpec, ...], source: str, target: str,
              skipped: frozenset[str]) -> bool:
    names = [s.name for s in states]
    i, j = names.index(source), names.index(target)
    return all(n in skipped for n in names[i + 1:j])


def _describe(state: StateSpec) -> str:
    parts = []
    if state.description:
        parts.append(state.description)
    if state.when is not None:
        if state.when.all:
            parts.append("when " + " and ".join(state.when.all))
        if state.when.any:
            parts.append("when any of " + ", ".join(state.when.any))
    if state.step:
        parts.append(f"step {state.step}")
    if state.cluster == "source":
        parts.append("on source")
    if state.undo:
        parts.append("has undo")
    return _label("; ".join(parts).replace(";", ","))


def _label(text: str | None) -> str:
    # Mermaid ends a statement at ';' or a newline and treats '#' as an entity start. Labels are
    # not cut: a cut `when` or description hides the very thing the diagram is read for.
    clean = re.sub(r"\s+", " ", text or "").replace(";", ",").replace("#", "")
    return clean.replace(":", "\u2236") if clean.count(":") else clean
