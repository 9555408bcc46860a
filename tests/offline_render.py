"""Render what an itinerary's states would create for one VM, offline, for template tests.

``render_actions(itinerary, ctx, state_context)`` walks the enabled states (``when.all``
predicates from ``ctx["predicates"]``), gives each state the context ``state_context(state,
ctx)`` returns (where a test adds what the state's own ``reads`` would have found), expands
``forEach`` items, and renders every ``apply``/``ensure`` action whose ``when`` holds. It yields
``(state, action, manifest)``; a real run would stamp labels on each manifest first. Tests only:
``smrun render`` is the product's preview.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from statemachine.context import with_item
from statemachine.expressions import evaluate
from statemachine.itinerary import Action, Itinerary, StateSpec
from statemachine.render import render_documents

StateContext = Callable[[StateSpec, dict[str, Any]], dict[str, Any]]


def render_actions(itinerary: Itinerary, ctx: dict[str, Any], state_context: StateContext,
                   ) -> Iterator[tuple[StateSpec, Action, dict[str, Any]]]:
    predicates: Mapping[str, bool] = ctx["predicates"]
    for state in itinerary.states:
        if state.when is not None and not all(predicates.get(p) for p in state.when.all):
            continue
        here = state_context(state, ctx)
        items = [None] if state.for_each is None else list(evaluate(state.for_each, here))
        for index, item in enumerate(items):
            local = here if state.for_each is None else with_item(here, item, index)
            for action in state.actions:
                if action.kind not in ("apply", "ensure") or not action.template:
                    continue
                if action.when is not None and not evaluate(action.when, local):
                    continue
                for doc in render_documents(action.template, local):
                    yield state, action, doc
