"""Predicates: the named booleans that decide which states of an itinerary run for a VM.

Built-ins come from the context (``HasPreHook``/``HasPostHook``: the VM has a hook for that step;
``Intercluster``: source and target are different clusters); an itinerary's ``spec.predicates``
add to or override them. They are evaluated once when a VM starts (:func:`evaluate_all`) and the
engine freezes the result in the journal, so a config change mid-run cannot skip states.

``state_enabled`` applies a state's ``when``: every ``all`` predicate true **and**, when ``any`` is
non-empty, at least one ``any`` predicate true. (Forklift's ``Any`` returns true unconditionally;
an empty ``any`` here means "no constraint", a non-empty one is a real disjunction.)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from statemachine.errors import DefinitionError
from statemachine.expressions import evaluate
from statemachine.itinerary import BUILTIN_PREDICATES, Itinerary, StateSpec, When

__all__ = ["BUILTINS", "builtin_values", "evaluate_all", "state_enabled"]


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _has_hook(step: str) -> Callable[[Mapping[str, Any]], bool]:
    def predicate(ctx: Mapping[str, Any]) -> bool:
        hooks = _field(ctx.get("vm"), "hooks") or ()
        return any(_field(h, "step") == step for h in hooks)

    predicate.__doc__ = f"The VM has a hook with step {step}."
    return predicate


def _intercluster(ctx: Mapping[str, Any]) -> bool:
    """The source and target are different clusters."""
    return bool(_field(ctx.get("clusters"), "intercluster"))


BUILTINS: Mapping[str, Callable[[Mapping[str, Any]], bool]] = {
    "HasPreHook": _has_hook("PreHook"),
    "HasPostHook": _has_hook("PostHook"),
    "Intercluster": _intercluster,
}
assert tuple(BUILTINS) == BUILTIN_PREDICATES  # the itinerary checks know these names


def builtin_values(ctx: Mapping[str, Any]) -> dict[str, bool]:
    """The built-in predicates' values for ``ctx``."""
    return {name: fn(ctx) for name, fn in BUILTINS.items()}


def evaluate_all(itinerary: Itinerary, ctx: Mapping[str, Any]) -> dict[str, bool]:
    """Every predicate (built-in and the itinerary's) for one VM. Itinerary predicates see
    ``plan``, ``vm``, ``settings``, ``reads``... but not each other's values (no ordering)."""
    values = builtin_values(ctx)
    visible = {k: v for k, v in ctx.items() if k != "predicates"}
    for name, expr in itinerary.predicates.items():
        values[name] = bool(evaluate(expr, visible,
                                     where=f"{itinerary.file_of('predicates', name)}: "
                                           f"spec.predicates.{name}"))
    return values


def state_enabled(state: StateSpec | When | None, values: Mapping[str, bool]) -> bool:
    """Whether a state (or a bare ``when``) runs given the predicate ``values``."""
    when = state.when if isinstance(state, StateSpec) else state
    if when is None:
        return True

    def value(name: str) -> bool:
        try:
            return bool(values[name])
        except KeyError:
            raise DefinitionError(f"unknown predicate {name!r}") from None

    if not all(value(name) for name in when.all):
        return False
    # Decision: an empty `any` is no constraint; a non-empty one needs a true member.
    return not when.any or any(value(name) for name in when.any)
