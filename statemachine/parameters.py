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
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from statemachine.errors import DefinitionError, Problem
from statemachine.itinerary import Itinerary, StateSpec
from statemachine.plan import Plan

__all__ = ["LazyValues", "ValuesMemo", "bind_parameters", "compute_state_values", "compute_values", "did_you_mean", "with_values"]


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


_MISSING = object()


@lru_cache(maxsize=64)
def _closures(values: tuple[tuple[str, str], ...]
              ) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]] | None]:
    """Per value of ``values`` (``spec.values`` as items), what its result depends on: the
    context's top-level names and the reads it uses, its own and those of the values it uses,
    transitively (each sorted); ``None`` when that cannot be told (:func:`expression_uses`:
    not deterministic, ``reads`` or ``values`` used as a whole) for it or a value it uses."""
    from statemachine.expressions import expression_uses

    declared = dict(values)
    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]] | None] = {}
    for name in declared:
        names: set[str] = set()
        reads: set[str] = set()
        todo, seen = [name], {name}
        closure: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        while todo:
            uses = expression_uses(declared[todo.pop()])
            if uses is None or uses.reads is None or uses.values is None:
                break
            names |= uses.names
            reads |= uses.reads
            for other in uses.values - seen:
                seen.add(other)
                if other in declared:  # an undeclared one is undefined, whatever the context
                    todo.append(other)
        else:
            closure = (tuple(sorted(names)), tuple(sorted(reads)))
        out[name] = closure
    return out


class ValuesMemo:
    """The itinerary's values computed for one VM, reused where a value is asked again over a
    context that is the same for it: every top-level name and every read its result depends on
    (``_closures``) is the very object it was computed over. Decision (issue 17, tenth session):
    preflight computed a VM's values anew for each of its reads (:class:`LazyValues` over the
    reads so far), then twice more over all of them: ~70 evaluations of 19 values per VM, about
    a fifth of its CPU. A value is a pure function of what it reads (one whose result can change
    with nothing changed, ``now()``, ``random``, is never reused), so a reuse answers what an
    evaluation would. Same objects, not equal ones: a context built again, or a read of another
    object, is a miss. One VM, one thread; the objects are not copied (nothing changes values)."""

    def __init__(self, itinerary: Itinerary) -> None:
        self._deps = _closures(tuple(itinerary.values.items()))
        self._known: dict[str, tuple[Any, tuple[Any, ...]]] = {}

    def _key(self, name: str, ctx: Mapping[str, Any]) -> tuple[Any, ...] | None:
        deps = self._deps.get(name)
        if deps is None:
            return None
        names, reads = deps
        got = ctx.get("reads")
        if not isinstance(got, Mapping):
            return None
        return (*(ctx.get(n, _MISSING) for n in names), *(got.get(r, _MISSING) for r in reads))

    def get(self, name: str, ctx: Mapping[str, Any]) -> tuple[bool, Any]:
        """``(True, value)`` when ``name`` was computed over what ``ctx`` holds for it."""
        known = self._known.get(name)
        if known is None:
            return False, None
        key = self._key(name, ctx)
        if key is None or len(key) != len(known[1]) or \
                any(a is not b for a, b in zip(key, known[1])):
            return False, None
        return True, known[0]

    def put(self, name: str, ctx: Mapping[str, Any], value: Any) -> None:
        key = self._key(name, ctx)
        if key is not None:
            self._known[name] = (value, key)


class LazyValues(dict[str, Any]):
    """``values`` while the reads are being resolved: a value is computed when first used,
    over the reads resolved so far (so a read's ``forEach`` may use a value built from earlier
    reads). A name the itinerary does not declare is undefined, as in any mapping. With a
    ``memo``, a value already computed over the same objects is taken from it."""

    def __init__(self, itinerary: Itinerary, ctx: Mapping[str, Any],
                 memo: ValuesMemo | None = None) -> None:
        super().__init__()
        self._itinerary = itinerary
        self._ctx = ctx
        self._memo = memo

    def __missing__(self, key: str) -> Any:
        expr = self._itinerary.values.get(key)
        if expr is None:
            raise KeyError(key)
        if self._memo is not None:
            found, value = self._memo.get(key, self._ctx)
            if found:
                self[key] = value
                return value
        from statemachine.expressions import evaluate

        value = evaluate(expr, {**self._ctx, "values": self},
                         where=f"{self._itinerary.file_of('values', key)}: spec.values.{key}")
        self[key] = value
        if self._memo is not None:
            self._memo.put(key, self._ctx, value)
        return value


def compute_values(itinerary: Itinerary, ctx: Mapping[str, Any],
                   memo: ValuesMemo | None = None) -> dict[str, Any]:
    """``spec.values`` over ``ctx`` (which has the VM's reads), in order; an error names the
    value (``FILE: spec.values.NAME: ...``). ``memo``: values already computed for the VM."""
    if not itinerary.values:
        return {}
    lazy = LazyValues(itinerary, ctx, memo)
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


def with_values(itinerary: Itinerary, ctx: Mapping[str, Any],
                memo: ValuesMemo | None = None) -> dict[str, Any]:
    """``ctx`` with ``values`` computed over it (``memo``: as :func:`compute_values`)."""
    return {**ctx, "values": compute_values(itinerary, ctx, memo)}
