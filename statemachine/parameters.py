"""An itinerary's parameters (set by a plan) and named values (computed per VM).

``bind_parameters(plan, itinerary)`` checks the plan's ``spec.parameters`` against the
itinerary's ``spec.parameters`` declarations (unknown names, each value against its JSON Schema,
required ones without a default) and returns the plan with every declared parameter set (the
plan's value, else the default). Templates and expressions read them as ``params.NAME``.

``compute_values(itinerary, ctx)`` evaluates ``spec.values`` in the order written, each seeing the
ones before it, and returns them (``values.NAME``). Callers run it once per VM after the VM's
reads, before the predicates, so predicates, states and preflight checks can all use them.
While the reads are resolved, :class:`LazyValues` lets a read's ``forEach``/``when``/name use a
value over the reads before it. ``compute_state_values(state, ctx)`` evaluates a state's own
``values`` the same way when the state is entered, after the state's reads.

Decisions recorded here:

- A plan that sets parameters the itinerary does not declare is refused: a misspelt name would
  otherwise silently leave the default in place.
- Binding is idempotent (a bound plan's values are its own values plus the defaults, which are
  valid), so the engine can bind again whatever plan it is handed.
- Values are not journaled: they are a pure function of the plan, the parameters and the reads,
  which a resumed run restores, so they are recomputed.

It does not load plans or itineraries and does not talk to a cluster.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from statemachine.errors import DefinitionError, Problem
from statemachine.itinerary import Itinerary, StateSpec
from statemachine.plan import Plan

__all__ = ["LazyValues", "bind_parameters", "compute_state_values", "compute_values", "did_you_mean", "with_values"]


def did_you_mean(name: str, known: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _schema_error(schema: Mapping[str, Any], value: Any) -> str | None:
    import jsonschema  # only a plan with parameters under a schema needs it (start-up time)

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where.lstrip('.') + ': ' if where else ''}{error.message}"


def bind_parameters(plan: Plan, itinerary: Itinerary) -> Plan:
    """``plan`` with ``parameters`` holding every declared parameter (defaults applied).

    Raises :class:`DefinitionError` with one ``file:line: spec.parameters.NAME: ...`` line per
    problem (nothing has been applied).
    """
    declared = {p.name: p for p in itinerary.parameters}
    problems: list[Problem] = []

    def fail(name: str | None, message: str) -> None:
        where = plan.parameters_at.get(name or "", "") or plan.parameters_at.get("", "")
        if not where:
            where = f"{plan.path}: spec.parameters" + (f".{name}" if name else "")
        problems.append(Problem(where, "", message))

    for name in plan.parameters:
        if name not in declared:
            known = ", ".join(declared) or "none"
            fail(name, f"unknown parameter {name!r}{did_you_mean(name, declared)} (itinerary "
                       f"{itinerary.name!r} declares: {known})")
    bound: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in plan.parameters:
            value = plan.parameters[name]
            why = _schema_error(spec.schema, value)
            if why is not None:
                fail(name, f"{why} (parameter {name!r} of itinerary {itinerary.name!r})")
            bound[name] = value
        elif spec.has_default:
            bound[name] = spec.default
        else:
            fail(None, f"parameter {name!r} is required by itinerary {itinerary.name!r}"
                       + (f": {spec.description}" if spec.description else ""))
    if problems:
        raise DefinitionError(str(problems[0]), problems)
    return replace(plan, parameters=MappingProxyType(bound))


class LazyValues(dict[str, Any]):
    """``values`` while the reads are being resolved: a value is computed when first used,
    over the reads resolved so far (so a read's ``forEach`` may use a value built from earlier
    reads). A name the itinerary does not declare is undefined, as in any mapping."""

    def __init__(self, itinerary: Itinerary, ctx: Mapping[str, Any]) -> None:
        super().__init__()
        self._itinerary = itinerary
        self._ctx = ctx

    def __missing__(self, key: str) -> Any:
        expr = self._itinerary.values.get(key)
        if expr is None:
            raise KeyError(key)
        from statemachine.expressions import evaluate

        value = evaluate(expr, {**self._ctx, "values": self},
                         where=f"{self._itinerary.file_of('values', key)}: spec.values.{key}")
        self[key] = value
        return value


def compute_values(itinerary: Itinerary, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """``spec.values`` over ``ctx`` (which has the VM's reads), in order; an error names the
    value (``FILE: spec.values.NAME: ...``)."""
    if not itinerary.values:
        return {}
    lazy = LazyValues(itinerary, ctx)
    return {name: lazy[name] for name in itinerary.values}


def compute_state_values(state: StateSpec, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """A state's own ``values`` over ``ctx`` (the VM's context with the itinerary's values and
    the state's reads), in order, each seeing the ones before it; returns only the state's.
    An error names the field (``FILE:LINE: spec.states[i].values.NAME: ...``)."""
    if not state.values:
        return {}
    from statemachine.expressions import evaluate

    here = f"{state.where}.values" if state.where else f"{state.name}: values"
    out: dict[str, Any] = {}
    values = dict(ctx.get("values") or {})
    for name, expr in state.values.items():
        out[name] = values[name] = evaluate(expr, {**ctx, "values": values}, where=f"{here}.{name}")
    return out


def with_values(itinerary: Itinerary, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """``ctx`` with ``values`` computed over it."""
    return {**ctx, "values": compute_values(itinerary, ctx)}
