"""Predicates: built-ins from the context, itinerary predicates, and the all/any truth table."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.errors import DefinitionError, TemplateError
from statemachine.itinerary import StateSpec, When, load_itinerary
from statemachine.predicates import builtin_values, evaluate_all, state_enabled

FULL = Path(__file__).parent / "data" / "itineraries" / "valid" / "full.yaml"


def ctx(hooks: list[dict[str, str]] | None = None, intercluster: bool = True,
        **settings: object) -> dict[str, object]:
    return {"vm": {"name": "web-1", "namespace": "shop", "hooks": hooks or []},
            "clusters": {"intercluster": intercluster}, "settings": dict(settings),
            "plan": {"name": "p"}, "reads": {"sourceVM": {"status": {"printableStatus": "Running"}}}}


def test_builtins_read_hooks_and_clusters() -> None:
    assert builtin_values(ctx()) == {"HasPreHook": False, "HasPostHook": False, "Intercluster": True}
    values = builtin_values(ctx([{"step": "PreHook", "hook": "quiesce"}], intercluster=False))
    assert values == {"HasPreHook": True, "HasPostHook": False, "Intercluster": False}
    values = builtin_values(ctx([{"step": "PostHook", "hook": "x"}]))
    assert values["HasPostHook"] and not values["HasPreHook"]


def test_builtins_tolerate_a_missing_context() -> None:
    assert builtin_values({}) == {"HasPreHook": False, "HasPostHook": False, "Intercluster": False}


def test_evaluate_all_adds_itinerary_predicates() -> None:
    itinerary = load_itinerary(FULL)
    values = evaluate_all(itinerary, ctx(submariner=True))
    assert values == {"HasPreHook": False, "HasPostHook": False, "Intercluster": True,
                      "Submariner": True, "RunningSource": True}
    assert evaluate_all(itinerary, ctx())["Submariner"] is False


def test_itinerary_predicates_do_not_see_other_predicates(tmp_path: Path) -> None:
    text = FULL.read_text().replace('Submariner: "settings.submariner | default(false)"',
                                    'Submariner: "predicates.Intercluster"')
    path = tmp_path / "peek.yaml"
    path.write_text(text.replace("templates: ../templates",
                                 f"templates: {FULL.parent.parent / 'templates'}"))
    itinerary = load_itinerary(path)
    with pytest.raises(TemplateError, match="'predicates' is undefined"):
        evaluate_all(itinerary, {**ctx(), "predicates": {"Intercluster": True}})


def test_itinerary_predicate_overrides_builtin(tmp_path: Path) -> None:
    path = tmp_path / "override.yaml"
    path.write_text("apiVersion: smrun.io/v1alpha1\nkind: Itinerary\nmetadata: {name: o}\n"
                    "spec:\n  migrationType: live\n"
                    "  predicates: {Intercluster: \"settings.forceIntercluster | default(false)\"}\n"
                    "  states:\n    - {name: Tunnel, when: {all: [Intercluster]}}\n"
                    "    - {name: Completed}\n")
    itinerary = load_itinerary(path)
    assert evaluate_all(itinerary, ctx(intercluster=True))["Intercluster"] is False
    assert evaluate_all(itinerary, ctx(forceIntercluster=True))["Intercluster"] is True


VALUES = {"T1": True, "T2": True, "F1": False, "F2": False}


@pytest.mark.parametrize("all_,any_,expected", [
    ((), (), True),
    (("T1",), (), True),
    (("T1", "T2"), (), True),
    (("T1", "F1"), (), False),
    (("F1",), (), False),
    ((), ("T1",), True),
    ((), ("F1",), False),          # Forklift's Any would say True here
    ((), ("F1", "F2"), False),     # ... and here
    ((), ("F1", "T1"), True),
    (("T1",), ("F1", "T2"), True),
    (("T1",), ("F1", "F2"), False),
    (("F1",), ("T1",), False),
])
def test_when_truth_table(all_: tuple[str, ...], any_: tuple[str, ...], expected: bool) -> None:
    when = When(all=all_, any=any_)
    assert state_enabled(when, VALUES) is expected
    assert state_enabled(StateSpec("S", when=when), VALUES) is expected


def test_no_when_means_enabled() -> None:
    assert state_enabled(StateSpec("S"), {}) is True
    assert state_enabled(None, {}) is True


def test_unknown_predicate_value_is_an_error() -> None:
    with pytest.raises(DefinitionError, match="unknown predicate 'Nope'"):
        state_enabled(When(all=("Nope",)), VALUES)
