"""A VM's values computed once where their context is the same (``parameters.ValuesMemo``).

Preflight computed each VM's values anew for every one of its reads and twice more after
(issue 17, tenth session). The memo reuses a value only when every name and read it depends on
(``expressions.expression_uses``, through the values it uses) is the very object it was
computed over. Contracts:

- a reused value equals a fresh evaluation, and the memo is a miss (the value is evaluated
  again) when a read or a context name it depends on is another object, also through another
  value; never reused: values over the clock or randomness, ``reads`` or ``values`` as a whole;
- preflight's outcome for every VM of the live example (manifests, permission needs, findings,
  the start it hands the engine) is the same with the memo as with none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import statemachine.engine.preflight as preflight
import statemachine.expressions as expressions
import statemachine.parameters as parameters
from statemachine.expressions import Uses, expression_uses
from statemachine.itinerary import Itinerary
from statemachine.parameters import ValuesMemo, compute_values
from statemachine.plan import load_plan
from statemachine.providers import plan_with_itinerary
from statemachine.sim.offline import seed_reads

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_uses_names_the_fields_of_reads_and_values_and_the_other_names() -> None:
    assert expression_uses("reads.vm.spec.x is defined and not values.a") == \
        Uses(frozenset(), frozenset({"vm"}), frozenset({"a"}))
    assert expression_uses("dns_name(vm.name ~ run.id) ~ reads['b'].c ~ values['d']") == \
        Uses(frozenset({"dns_name", "vm", "run"}), frozenset({"b"}), frozenset({"d"}))
    # a function that reads the context itself (the plan's storage map): nothing can be told
    assert expression_uses("storage_for(reads.vm.x)") is None
    assert expression_uses("network_for(n)") is None
    # reads or values as a whole: any of them
    assert expression_uses("reads | length").reads is None  # type: ignore[union-attr]
    assert expression_uses("values[key]") == Uses(frozenset({"key"}), frozenset(), None)
    assert expression_uses("reads[0]").reads is None  # type: ignore[union-attr]
    # not deterministic: nothing can be told (one that does not compile is never evaluated
    # to a value, so whatever it gives is not used)
    assert expression_uses("now() ~ vm.name") is None
    assert expression_uses("values.a | random") is None


class _It:
    """The part of an itinerary that values need."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.file = "it.yaml"

    def file_of(self, kind: str, name: str) -> str:
        return self.file


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    evaluated: list[str] = []
    evaluate = expressions.evaluate

    def counted(expr: str, ctx: Any, **kwargs: Any) -> Any:
        evaluated.append(expr)
        return evaluate(expr, ctx, **kwargs)

    monkeypatch.setattr(expressions, "evaluate", counted)
    return evaluated


VALUES = {
    "names": "reads.obj.entries | map(attribute='name') | list",
    "first": "values.names | first",
    "key": "vm.name ~ '-' ~ values.first",
    "other": "reads.other.n | default(0) + 1",
    "clock": "now().year > 0",
    "whole": "reads | length",
}


def _fresh(it: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    return compute_values(it, ctx)


def test_a_reused_value_equals_a_fresh_one_and_is_not_evaluated_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    it: Any = _It(VALUES)
    obj, vm = {"entries": [{"name": "a"}, {"name": "b"}]}, {"name": "web"}
    ctx = {"vm": vm, "reads": {"obj": obj, "other": None}}
    memo = ValuesMemo(it)
    first = compute_values(it, ctx, memo)
    assert first == _fresh(it, ctx)
    evaluated = _counting(monkeypatch)
    # the same objects under another dict (a context built again around them): reused
    again = compute_values(it, {"vm": vm, "reads": {"obj": obj, "other": None}}, memo)
    assert again == first
    assert sorted(evaluated) == sorted([VALUES["clock"], VALUES["whole"]])  # never reused


@pytest.mark.parametrize("change, stale", [
    # a read a value depends on is another object: it and the values over it
    ("obj", {"names", "first", "key"}),
    # one it does not depend on: only what depends on it (and on reads as a whole)
    ("other", {"other"}),
    # a context name, through another value
    ("vm", {"key"}),
])
def test_a_value_is_evaluated_again_when_what_it_depends_on_changes(
        monkeypatch: pytest.MonkeyPatch, change: str, stale: set[str]) -> None:
    it: Any = _It(VALUES)
    reads = {"obj": {"entries": [{"name": "a"}]}, "other": {"n": 1}}
    ctx = {"vm": {"name": "web"}, "reads": reads}
    memo = ValuesMemo(it)
    compute_values(it, ctx, memo)
    if change == "vm":
        changed = {**ctx, "vm": {"name": "db"}}
    else:  # an equal object is still another object: a miss, evaluated again
        changed = {**ctx, "reads": {**reads, change: {"entries": [{"name": "z"}], "n": 5}}}
    evaluated = _counting(monkeypatch)
    got = compute_values(it, changed, memo)
    again = {VALUES[n] for n in stale} | {VALUES["clock"], VALUES["whole"]}
    assert set(evaluated) == again
    assert got == _fresh(it, changed)


def test_a_read_added_invalidates_only_the_values_over_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """As while a VM's reads are resolved: a value computed before a read existed (undefined
    there) is evaluated again once it does, and equals what a fresh evaluation gives."""
    it: Any = _It({"n": "reads.later.n | default(-1)", "k": "vm.name"})
    vm = {"name": "web"}
    memo = ValuesMemo(it)
    before = compute_values(it, {"vm": vm, "reads": {}}, memo)
    assert before == {"n": -1, "k": "web"}
    evaluated = _counting(monkeypatch)
    after = compute_values(it, {"vm": vm, "reads": {"later": {"n": 3}}}, memo)
    assert after == {"n": 3, "k": "web"}
    assert evaluated == ["reads.later.n | default(-1)"]


def test_values_that_use_each_other_in_a_cycle_are_not_reused() -> None:
    deps = parameters._closures((("a", "values.b ~ vm.x"), ("b", "reads.r.y ~ values.a"),
                                 ("c", "values.undeclared | default(1)")))
    assert deps["a"] == (("vm",), ("r",)) and deps["b"] == (("vm",), ("r",))
    assert deps["c"] == ((), ())  # an undeclared value is undefined whatever the context


def _outcome(plan: Any, it: Itinerary, source: Any, starts: Any) -> list[Any]:
    out = []
    for vm in plan.vms:
        found = preflight._check_vm(plan, it, vm, source, {"source": "https://a", "target": "https://b"},
                                    starts)
        out.append(([(m.state, m.cluster, m.action, m.manifest, m.index) for m in found.rendered],
                     found.refs, found.problems, found.warnings))
    return out


def test_preflight_of_the_live_example_is_the_same_with_the_memo_as_without(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plan, it = plan_with_itinerary(load_plan(EXAMPLES / "live" / "plan.yaml"))
    plan = parameters.bind_parameters(plan, it)
    source = seed_reads(plan)

    def starts() -> preflight.VmStarts:
        return preflight.VmStarts(plan, it, "run-1", None, preflight.ClusterReads({}))

    with_memo = starts()
    evaluated = _counting(monkeypatch)
    got = _outcome(plan, it, source, with_memo)
    with_memo_count = len(evaluated)

    class NoMemo(ValuesMemo):
        def get(self, name: str, ctx: Any) -> tuple[bool, Any]:
            return False, None

    monkeypatch.setattr(preflight, "ValuesMemo", NoMemo)
    without = starts()
    evaluated.clear()
    assert _outcome(plan, it, source, without) == got
    assert with_memo_count < len(evaluated)
    for vm in plan.vms:
        a, b = with_memo.peek(vm.ref, 1e9), without.peek(vm.ref, 1e9)
        assert a is not None and b is not None
        assert (a.reads, a.values, a.predicates) == (b.reads, b.values, b.predicates)


def _parsed_uses(source: str) -> Uses | None:
    """The oracle: what Jinja's own syntax tree says ``source`` reads (its variables, and the
    fields of reads and values); ``None`` when it does not parse."""
    from jinja2 import nodes

    try:
        tree = expressions._expression_env().parse(f"{{{{ {source} }}}}")
    except Exception:  # noqa: BLE001
        return None
    names: set[str] = set()
    fields: dict[str, set[str] | None] = {"reads": set(), "values": set()}

    def visit(node: Any) -> None:
        if isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name) \
                and node.node.name in fields:
            key = node.attr if isinstance(node, nodes.Getattr) else (
                node.arg.value if isinstance(node.arg, nodes.Const) else None)
            if not isinstance(key, str):
                fields[node.node.name] = None
            elif fields[node.node.name] is not None:
                fields[node.node.name].add(key)  # type: ignore[union-attr]
            if isinstance(node, nodes.Getitem):
                visit(node.arg)
            return
        if isinstance(node, nodes.Name):
            if node.name in fields:
                fields[node.name] = None
            else:
                names.add(node.name)
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    reads, values = fields["reads"], fields["values"]
    return Uses(frozenset(names), None if reads is None else frozenset(reads),
                None if values is None else frozenset(values))


def _expressions() -> list[str]:
    from statemachine.itinerary import load_itinerary

    root = Path(__file__).resolve().parent.parent
    out = [
        "reads.a.b | default(reads['c']) ~ values.d", "reads['a' ~ 'b']", "reads[x]", "reads . a",
        "x.reads.y ~ y | reads", "values | length", "x is not sameas y", "not z and (w or v)",
        "[reads.a, {'k': values.b}] | map(attribute='x') | list", "f(reads=1)", "reads.0.x",
        "'reads.a' ~ \"values.b\" ~ c", "a if reads.b else values.c", "d['reads']", "e.values()",
        "range(3) | select('odd') | list", "reads['it\\'s']", "namespace(x=vm.name).x",
    ]
    for path in sorted((root / "itineraries").glob("*.yaml")):
        it = load_itinerary(path)
        out += [*it.values.values(), *it.predicates.values()]
        for r in (*it.reads, *it.setup.reads):
            out += [e for e in (r.when, r.for_each) if e]
        for check in it.preflight:
            out += [e for e in (check.when, check.check, check.block_if, check.for_each) if e]
        for state in (*it.states, *it.setup.states):
            out += [*state.values.values(), *(e for e in (state.for_each,) if e)]
            ready = state.readiness
            if ready is not None:
                out += [c.expression for c in (ready.ready, ready.failed) if c is not None]
    return out


def test_uses_from_tokens_is_never_less_than_the_syntax_tree_says() -> None:
    """``expression_uses`` reads tokens, not Jinja's tree: for every expression of the built-in
    itineraries and the odd forms above, it names at least every variable and field the tree
    has (a name more only costs a comparison), or gives up (``None``)."""
    sources = _expressions()
    assert len(sources) > 100
    for source in sources:
        mine, tree = expression_uses(source), _parsed_uses(source)
        if mine is None:
            continue
        assert tree is not None, source
        assert tree.names <= mine.names, source
        for field in ("reads", "values"):
            theirs, ours = getattr(tree, field), getattr(mine, field)
            assert ours is None or (theirs is not None and theirs <= ours), (source, field)
