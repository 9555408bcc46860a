"""The semantic checks an itinerary must pass beyond its JSON Schema (docs/itinerary.md, last part).

``check(itinerary, doc)`` returns every problem found, each located in the source file: state
names unique, ``Completed`` present and last, ``when``/``next``/``commit.after`` naming existing
predicates and states, templates present (and syntactically valid), output names unique, read
names unique (a state's ``reads`` against each other and against ``spec.reads``/``setup.reads``), every
state reachable from the first, every loop with an exit, every expression and template string
compiling, the names it uses declared (names.py) and the field paths below reads of known kinds
named as the kinds have them (fieldpaths.py). It reads template files but renders nothing and
evaluates no expression.

Decision (start-up time, issue 8): template files are compiled in the shared environment of their
folder (``expressions.template_environment``), the one rendering uses, so a run compiles each
template once, not once to check and again to render; the templates a file includes come from
that same compile (``expressions.referenced_templates``) instead of a second parse. When the
checks are skipped (a kept clean verdict, :mod:`statemachine.itinerary_verdict`), the first
render compiles each template instead, through the code cache; :func:`findings` lists the
template files read, which such a verdict must be checked against.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from jinja2 import TemplateNotFound, TemplateSyntaxError

from statemachine.errors import Problem, TemplateError
from statemachine.expressions import (compile_expression, compile_template, referenced_templates,
                                      template_environment)
from statemachine.itinerary import (TERMINAL_STATES, Action, Itinerary, ReadSpec, RefSpec,
                                    StateSpec, When, flow_edges, start_states)
from statemachine.fieldpaths import KindOfRead, unknown_fields
from statemachine.names import name_uses, unknown_names
from statemachine.yamlsource import DocPath, SourceDoc

__all__ = ["Findings", "check", "check_all", "findings"]

Section = Literal["states", "setup"]


@dataclass(frozen=True)
class Findings:
    """What the checks found, and the template files they read (for a verdict cache)."""

    problems: list[Problem]
    warnings: list[Problem]
    templates: dict[str, tuple[str, str] | None]
    """Each template file the checks read (the ones named by actions and those they include),
    by name: ``(text, file name)`` as the loader found it; ``None`` if it was not found."""
    search_path: tuple[str, ...]
    """The folders template names were looked up in, first wins."""


def check(itinerary: Itinerary, doc: SourceDoc) -> list[Problem]:
    """Every semantic problem of ``itinerary`` (loaded from ``doc``)."""
    return check_all(itinerary, doc)[0]


def check_all(itinerary: Itinerary, doc: SourceDoc) -> tuple[list[Problem], list[Problem]]:
    """``(problems, warnings)`` of ``itinerary``: warnings (a ``step`` out of pipeline order)
    do not stop a run."""
    found = findings(itinerary, doc)
    return found.problems, found.warnings


def findings(itinerary: Itinerary, doc: SourceDoc) -> Findings:
    """:func:`check_all`, with the template files read."""
    checker = _Checker(itinerary, doc)
    problems = list(checker.run())
    loader = checker.env.loader
    search_path = tuple(str(d) for d in getattr(loader, "searchpath", ()))
    return Findings(problems, checker.warnings, checker.templates, search_path)


class _Checker:
    def __init__(self, itinerary: Itinerary, doc: SourceDoc) -> None:
        self.it = itinerary
        self.doc = doc
        self.env = template_environment(itinerary.template_dir)
        self.raw: dict[str, Any] = doc.data["spec"]
        outputs = [n for s in (*itinerary.states, *itinerary.setup.states) for n in s.outputs]
        # The names an expression may read (names.py), per scope: a VM's (the default), setup's
        # (setup.reads, no values) and, inside a state, plus that state's own reads.
        self.vm_scope: dict[str, tuple[str, ...]] = {
            "reads": tuple(r.name for r in itinerary.reads), "outputs": tuple(outputs),
            "values": tuple(itinerary.values), "params": tuple(p.name for p in itinerary.parameters)}
        self.setup_scope = {**self.vm_scope, "reads": tuple(r.name for r in itinerary.setup.reads),
                            "values": ()}
        self.known = self.vm_scope
        # The kind of each read in scope, for the field paths below it (fieldpaths.py).
        self.vm_kinds = _kinds(itinerary.reads)
        self.setup_kinds = _kinds(itinerary.setup.reads)
        self.kinds = self.vm_kinds
        self.in_state: str | None = None
        self.section: Section = "states"
        self.warnings: list[Problem] = []
        # Per (section, state): the outputs it uses unguarded (name, where), and the outputs it
        # tests (`is defined`, `| default`) anywhere: see output_order().
        self.output_uses: dict[tuple[Section, str], list[tuple[str, DocPath]]] = {}
        self.output_tests: dict[tuple[Section, str], set[str]] = {}
        self.templates: dict[str, tuple[str, str] | None] = {}

    def p(self, path: DocPath, message: str) -> Problem:
        return self.doc.problem(path, message)

    def run(self) -> Iterator[Problem]:
        sp: DocPath = ("spec",)
        yield from self.names(self.it.states, (*sp, "states"), main=True)
        yield from self.names(self.it.setup.states, (*sp, "setup", "states"), main=False)
        yield from self.flow(self.it.states, (*sp, "states"), main=True)
        yield from self.flow(self.it.setup.states, (*sp, "setup", "states"), main=False)
        yield from self.outputs()
        yield from self.read_names()
        yield from self.parameters()
        for name, expr in self.it.values.items():
            yield from self.expr(expr, (*sp, "values", name))
        for name, expr in self.it.predicates.items():
            yield from self.expr(expr, (*sp, "predicates", name))
        for i, read in enumerate(self.it.reads):
            yield from self.read(i, read.for_each, read.when, read.object, (*sp, "reads", i))
        self.known, self.kinds = self.setup_scope, self.setup_kinds
        for i, read in enumerate(self.it.setup.reads):
            yield from self.read(i, read.for_each, read.when, read.object,
                                 (*sp, "setup", "reads", i))
        self.known, self.kinds = self.vm_scope, self.vm_kinds
        for i, chk in enumerate(self.it.preflight):
            path = (*sp, "preflight", i)
            yield from self.expr(chk.check, (*path, "check"))
            yield from self.expr(chk.for_each, (*path, "forEach"))
            yield from self.expr(chk.block_if, (*path, "blockIf"))
            yield from self.expr(chk.when, (*path, "when"))
            yield from self.template_string(chk.message, (*path, "message"))
        if self.it.commit is not None:
            path = (*sp, "commit")
            if self.it.commit.after not in self.it.state_names:
                yield self.p((*path, "after"), f"unknown state {self.it.commit.after!r}")
            yield from self.ref(self.it.commit.object, (*path, "object"))
            yield from self.expr(self.it.commit.condition.expression, (*path, "condition"))
        for i, state in enumerate(self.it.states):
            self.kinds = {**self.vm_kinds, **_kinds(state.reads)}
            yield from self.scoped(state, (*sp, "states", i), self.vm_scope)
        self.section = "setup"
        for i, state in enumerate(self.it.setup.states):
            self.kinds = {**self.setup_kinds, **_kinds(state.reads)}
            yield from self.scoped(state, (*sp, "setup", "states", i), self.setup_scope)
        self.known, self.in_state, self.section = self.vm_scope, None, "states"
        self.kinds = self.vm_kinds
        yield from self.output_order()
        self.warnings += self.step_order()

    def scoped(self, state: StateSpec, path: DocPath,
               scope: dict[str, tuple[str, ...]]) -> Iterator[Problem]:
        self.known = {**scope, "reads": (*scope["reads"], *(r.name for r in state.reads))}
        self.in_state = state.name
        for name, expr in state.values.items():
            # In order: a state value sees the itinerary's values and the state's earlier ones.
            earlier = tuple(state.values)[:tuple(state.values).index(name)]
            self.known = {**self.known, "values": (*scope["values"], *earlier)}
            yield from self.expr(expr, (*path, "values", name))
            if name in scope["values"]:
                yield self.p((*path, "values", name), f"value {name!r} is already defined in "
                             "spec.values (a state value would shadow it)")
        self.known = {**self.known, "values": (*scope["values"], *state.values)}
        yield from self.state(state, path)

    # -- names and flow ------------------------------------------------------------------------

    def names(self, states: tuple[StateSpec, ...], path: DocPath, *, main: bool) -> Iterator[Problem]:
        seen: set[str] = set()
        for i, state in enumerate(states):
            if state.name in seen:
                yield self.p((*path, i, "name"), f"duplicate state name {state.name!r}")
            seen.add(state.name)
            if state.name in ("Failed", "Canceled"):
                yield self.p((*path, i, "name"),
                             f"{state.name!r} is an implicit terminal state; do not list it")
        if not main:
            return
        if not states or states[-1].name != "Completed":
            where = (*path, len(states) - 1, "name") if states else path
            yield self.p(where, "the last state must be 'Completed'"
                         + (" (it is listed earlier)" if "Completed" in seen else ""))
        elif states[-1].when is not None:
            yield self.p((*path, len(states) - 1, "when"), "'Completed' cannot have a 'when'")

    def flow(self, states: tuple[StateSpec, ...], path: DocPath, *, main: bool) -> Iterator[Problem]:
        names = [s.name for s in states]
        index = {n: i for i, n in reversed(list(enumerate(names)))}
        for i, state in enumerate(states):
            for j, entry in enumerate(state.next):
                if entry.to not in index:
                    hint = " (terminal states other than Completed are implicit)" \
                        if entry.to in TERMINAL_STATES else ""
                    yield self.p((*path, i, "next", j, "to"), f"unknown state {entry.to!r}{hint}")
            if state.when:
                for kind, preds in (("all", state.when.all), ("any", state.when.any)):
                    for k, pred in enumerate(preds):
                        if pred not in self.it.predicate_names:
                            yield self.p((*path, i, "when", kind, k),
                                         f"unknown predicate {pred!r} (known: "
                                         f"{', '.join(self.it.predicate_names)})")
        if not main or not states:
            return
        edges = [e for e in flow_edges(states) if e.target in index]
        succ: dict[str, list[str]] = {n: [] for n in names}
        for e in edges:
            succ[e.source].append(e.target)
        reached = set(start_states(states))
        todo = list(reached)
        while todo:
            for nxt in succ[todo.pop()]:
                if nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        for i, state in enumerate(states):
            if state.name not in reached and index.get(state.name) == i:
                yield self.p((*path, i, "name"),
                             f"state {state.name!r} is unreachable from the first state")
        yield from self.loops(states, succ, path, index)

    def loops(self, states: tuple[StateSpec, ...], succ: dict[str, list[str]], path: DocPath,
              index: dict[str, int]) -> Iterator[Problem]:
        for component in _strongly_connected(list(succ), succ):
            members = set(component)
            cyclic = len(component) > 1 or component[0] in succ[component[0]]
            if not cyclic:
                continue
            if any(t not in members for n in component for t in succ[n]):
                continue
            ordered = sorted(component, key=lambda n: index[n])
            cycle = " -> ".join([*ordered, ordered[0]])
            yield self.p((*path, index[ordered[0]], "name"),
                         f"loop {cycle} has no exit (every 'next' stays inside it)")

    def outputs(self) -> Iterator[Problem]:
        seen: dict[str, str] = {}
        for section, states in (("states", self.it.states),
                                ("setup", self.it.setup.states)):
            base: DocPath = ("spec", "states") if section == "states" else ("spec", "setup", "states")
            for i, state in enumerate(states):
                for name in state.outputs:
                    if name in seen:
                        yield self.p((*base, i, "outputs", name),
                                     f"output {name!r} is already defined by state {seen[name]!r}")
                    else:
                        seen[name] = state.name

    def parameters(self) -> Iterator[Problem]:
        """Unique names; each ``schema`` a valid JSON Schema; each ``default`` valid under it."""
        if not self.it.parameters:
            return  # no jsonschema import for itineraries without parameters (start-up time)
        import jsonschema

        seen: set[str] = set()
        for i, param in enumerate(self.it.parameters):
            path: DocPath = ("spec", "parameters", i)
            if param.name in seen:
                yield self.p((*path, "name"), f"duplicate parameter {param.name!r}")
            seen.add(param.name)
            try:
                jsonschema.Draft202012Validator.check_schema(dict(param.schema))
            except jsonschema.SchemaError as exc:
                yield self.p((*path, "schema"), f"not a valid JSON Schema: {exc.message}")
                continue
            if param.has_default:
                error = jsonschema.exceptions.best_match(
                    jsonschema.Draft202012Validator(dict(param.schema)).iter_errors(param.default))
                if error is not None:
                    yield self.p((*path, "default"), f"does not match the schema: {error.message}")

    def read_names(self) -> Iterator[Problem]:
        """Read names are unique per scope; a state's reads merge over the VM's (or setup's)
        reads, so a state read may not reuse one of those names (it would shadow it silently)."""
        for section, reads, states in (("states", self.it.reads, self.it.states),
                                       ("setup", self.it.setup.reads, self.it.setup.states)):
            base: DocPath = ("spec",) if section == "states" else ("spec", "setup")
            outer: set[str] = set()
            for i, read in enumerate(reads):
                if read.name in outer:
                    yield self.p((*base, "reads", i, "name"), f"duplicate read name {read.name!r}")
                outer.add(read.name)
            scope = "spec.reads" if section == "states" else "spec.setup.reads"
            for i, state in enumerate(states):
                seen: set[str] = set()
                for j, read in enumerate(state.reads):
                    path = (*base, "states", i, "reads", j, "name")
                    if read.name in seen:
                        yield self.p(path, f"duplicate read name {read.name!r} in state {state.name!r}")
                    elif read.name in outer:
                        yield self.p(path, f"read {read.name!r} is already defined in {scope}")
                    seen.add(read.name)

    def output_order(self) -> Iterator[Problem]:
        """An output a state uses unguarded must come from a state that runs before it on every
        path of the flow (docs/itinerary.md, "Output order").

        Decisions: "before" is dominance in the flow graph (:func:`flow_edges` with the skip edges
        of optional states) from the first state; a state may use its own outputs (a loop's
        previous round, its undo); a state that tests an output anywhere (``outputs.X is
        defined``, ``outputs.X | default(...)``) copes with its absence, so its other uses of
        that output are not flagged; an optional producer counts as run when the user's ``when``
        implies the producer's (predicates are frozen per VM). VM states do not see setup
        outputs, and setup runs before every VM."""
        producers: dict[str, tuple[Section, StateSpec]] = {}
        sections: tuple[tuple[Section, tuple[StateSpec, ...]], ...] = (
            ("setup", self.it.setup.states), ("states", self.it.states))
        for section, states in sections:
            for state in states:
                for name in state.outputs:
                    producers.setdefault(name, (section, state))  # duplicates: reported elsewhere
        doms: dict[Section, dict[str, set[str]]] = {}  # computed on first need (start-up time)
        for (section, user), uses in self.output_uses.items():
            tested = self.output_tests.get((section, user), set())
            states = self.it.states if section == "states" else self.it.setup.states
            spec = next(s for s in states if s.name == user)
            reported: set[str] = set()
            for name, path in uses:
                if name in tested or name in reported or name not in producers:
                    continue  # undeclared names are reported by declared()
                where, producer = producers[name]
                if where != section:
                    reported.add(name)
                    yield self.p(path, f"output outputs.{name} is made by "
                                 + (f"setup state {producer.name!r}; states of a VM do not see "
                                    "setup outputs" if where == "setup" else
                                    f"state {producer.name!r} of each VM; setup states run before "
                                    "every VM") + f" (in state {user!r})")
                    continue
                if producer.name == user:
                    continue
                if section not in doms:
                    doms[section] = _dominators(states)
                if producer.name in doms[section].get(user, ()):
                    continue
                if producer.when is not None and _implies(spec.when, producer.when):
                    relaxed = tuple(replace(s, when=None) if s.name == producer.name else s
                                    for s in states)
                    if producer.name in _dominators(relaxed).get(user, ()):
                        continue
                reported.add(name)
                yield self.p(path, f"output outputs.{name} comes from state {producer.name!r}, "
                             f"which does not run before state {user!r} on every path (test it "
                             f"with 'outputs.{name} is defined' or '| default(...)' if that is "
                             "intended)")

    def step_order(self) -> list[Problem]:
        """A state whose ``step`` comes earlier in ``spec.pipeline`` than the step of a state
        listed before it: a warning (status shows steps in pipeline order)."""
        out: list[Problem] = []
        if not self.it.pipeline:
            return out
        rank = {step: i for i, step in enumerate(self.it.pipeline)}
        latest: tuple[int, StateSpec] | None = None
        for i, state in enumerate(self.it.states):
            if state.step is None or state.step not in rank:
                continue
            if latest is not None and rank[state.step] < latest[0]:
                before = latest[1]
                out.append(self.p(("spec", "states", i, "step"),
                                  f"step {state.step!r} of state {state.name!r} is out of pipeline "
                                  f"order: state {before.name!r} before it has step {before.step!r}, "
                                  f"a later step of spec.pipeline"))
            elif latest is None or rank[state.step] >= latest[0]:
                latest = (rank[state.step], state)
        return out

    # -- per state -----------------------------------------------------------------------------

    def state(self, state: StateSpec, path: DocPath) -> Iterator[Problem]:
        if self.it.pipeline and state.step and state.step not in self.it.pipeline:
            yield self.p((*path, "step"), f"step {state.step!r} is not in spec.pipeline "
                         f"({', '.join(self.it.pipeline)})")
        yield from self.expr(state.for_each, (*path, "forEach"))
        for i, read in enumerate(state.reads):
            yield from self.read(i, read.for_each, read.when, read.object, (*path, "reads", i))
        for i, action in enumerate(state.actions):
            yield from self.action(action, (*path, "actions", i))
        for i, action in enumerate(state.undo):
            yield from self.action(action, (*path, "undo", i))
        r = state.readiness
        if r is not None:
            rp = (*path, "readiness")
            if r.object is not None:
                yield from self.ref(r.object, (*rp, "object"))
            if r.ready is not None:
                yield from self.expr(r.ready.expression, (*rp, "ready"))
            if r.failed is not None:
                yield from self.expr(r.failed.expression, (*rp, "failed"))
            yield from self.expr(r.progress, (*rp, "progress"))
            yield from self.template_string(r.message, (*rp, "message"))
            if r.object is None and not any(a.kind in ("apply", "ensure") for a in state.actions):
                yield self.p(rp, "readiness needs an 'object' when the state has no apply/ensure "
                             "action (nothing to watch)")
        for name, expr in state.outputs.items():
            yield from self.expr(expr, (*path, "outputs", name))
        # `next` is chosen after the state, when its own values are gone.
        self.known = {**self.known, "values": tuple(n for n in self.known["values"]
                                                    if n not in state.values)}
        for i, entry in enumerate(state.next):
            yield from self.expr(entry.when, (*path, "next", i, "when"))

    def action(self, action: Action, path: DocPath) -> Iterator[Problem]:
        yield from self.expr(action.when, (*path, "when"))
        key = "delete" if action.kind == "delete_created" else action.kind
        if action.template is not None:
            sub = (*path, key) if action.kind != "patch" else (*path, "patch", "patch", "template")
            yield from self.template_file(action.template, sub)
        if action.object is not None:
            sub = (*path, key) if action.kind == "delete" else (*path, key, "object")
            yield from self.ref(action.object, sub)
        if action.patch is not None:
            yield from self.value_strings(action.patch, (*path, "patch", "patch"))
        yield from self.expr(action.seconds_expr, (*path, "wait", "seconds"))
        yield from self.expr(action.until, (*path, "wait", "until"))

    def read(self, i: int, for_each: str | None, when: str | None, obj: RefSpec,
             path: DocPath) -> Iterator[Problem]:
        yield from self.expr(for_each, (*path, "forEach"))
        yield from self.expr(when, (*path, "when"))
        yield from self.ref(obj, (*path, "object"))

    # -- leaves --------------------------------------------------------------------------------

    def expr(self, expr: str | None, path: DocPath) -> Iterator[Problem]:
        if expr is None:
            return
        try:
            compile_expression(expr)
        except TemplateError as exc:
            yield self.p(path, str(exc))
            return
        yield from self.declared(expr, "expression", path)

    def template_string(self, source: str | None, path: DocPath) -> Iterator[Problem]:
        if source is None or "{" not in source:
            return
        try:
            compile_template(source)
        except TemplateError as exc:
            yield self.p(path, str(exc))
            return
        yield from self.declared(source, "template", path)

    def declared(self, source: str, kind: Literal["expression", "template"],
                 path: DocPath) -> Iterator[Problem]:
        """Every reads/outputs/values/params name ``source`` uses is declared in scope, and
        every field path below a read of a known kind names fields that kind has."""
        where = f" in state {self.in_state!r}" if self.in_state else ""
        self.note_outputs(source, kind, path)
        for message in unknown_names(source, kind, self.known):
            yield self.p(path, message + where + self._owner_hint(message))
        for message in unknown_fields(source, kind, self.kinds):
            yield self.p(path, message + where)

    def _owner_hint(self, message: str) -> str:
        """``; it is a value of state 'X', visible only there`` for a state value used elsewhere."""
        if not message.startswith("unknown value values."):
            return ""
        name = message[len("unknown value values."):].split(" ", 1)[0]
        owners = [s.name for s in (*self.it.states, *self.it.setup.states)
                  if name in s.values and s.name != self.in_state]
        return f"; it is a value of state {owners[0]!r}, visible only there" if owners else ""

    def note_outputs(self, source: str, kind: Literal["expression", "template"],
                     path: DocPath) -> None:
        """Remember which outputs the current state uses (for :meth:`output_order`)."""
        if self.in_state is None:
            return
        key = (self.section, self.in_state)
        for root, name, test in name_uses(source, kind):
            if root != "outputs":
                continue
            if test:
                self.output_tests.setdefault(key, set()).add(name)
            else:
                self.output_uses.setdefault(key, []).append((name, path))

    def ref(self, ref: RefSpec, path: DocPath) -> Iterator[Problem]:
        yield from self.template_string(ref.name, (*path, "name"))
        yield from self.template_string(ref.namespace, (*path, "namespace"))

    def value_strings(self, value: Any, path: DocPath) -> Iterator[Problem]:
        if isinstance(value, str):
            yield from self.template_string(value, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from self.value_strings(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from self.value_strings(v, (*path, i))

    def template_file(self, name: str, path: DocPath) -> Iterator[Problem]:
        seen: set[str] = set()
        try:
            self._load_with_includes(name, seen)
            for used in sorted(seen):
                found = self._source(used)
                self.templates[used] = found
                if found is None:
                    continue
                source = found[0]
                where = f" in state {self.in_state!r}" if self.in_state else ""
                self.note_outputs(source, "template", path)
                for message in unknown_names(source, "template", self.known):
                    yield self.p(path, f"template {used!r}: {message}{where}"
                                 f"{self._owner_hint(message)}")
                for message in unknown_fields(source, "template", self.kinds):
                    yield self.p(path, f"template {used!r}: {message}{where}")
        except TemplateNotFound as exc:
            missing = exc.name if exc.name and exc.name != name else None
            yield self.p(path, f"template {name!r} not found in {self.it.template_dir}"
                         + (f" (it includes missing {missing!r})" if missing else ""))
        except TemplateSyntaxError as exc:
            yield self.p(path, f"template {name!r} has a syntax error at "
                         f"{exc.filename or name}:{exc.lineno}: {exc.message}")

    def _source(self, name: str) -> tuple[str, str] | None:
        """``(text, file name)`` of the template ``name``."""
        loader = self.env.loader
        if loader is None:
            return None
        try:
            source, filename, _ = loader.get_source(self.env, name)
        except TemplateNotFound:
            return None
        return (source, filename) if filename else None

    def _load_with_includes(self, name: str, seen: set[str]) -> None:
        """Compile ``name`` and every template it includes/imports/extends by a literal name."""
        if name in seen:
            return
        seen.add(name)
        self.env.get_template(name)
        for included in referenced_templates(self.env, name):
            self._load_with_includes(included, seen)


def _kinds(reads: tuple[ReadSpec, ...]) -> dict[str, KindOfRead]:
    return {r.name: (r.object.api_version, r.object.kind, r.for_each is not None) for r in reads}


def _dominators(states: tuple[StateSpec, ...]) -> dict[str, set[str]]:
    """For each state, the states on every path to it from the start (itself included), over
    the flow graph with the skip edges of optional states. Iterative data-flow: tens of states."""
    names = list(dict.fromkeys(s.name for s in states))
    preds: dict[str, set[str]] = {n: set() for n in names}
    for e in flow_edges(states):
        if e.source in preds and e.target in preds:
            preds[e.target].add(e.source)
    entry = ""  # the virtual start, before the first states (no state has an empty name)
    starts = set(start_states(states))
    everything = {*names, entry}
    dom: dict[str, set[str]] = {n: set(everything) for n in names}
    changed = True
    while changed:
        changed = False
        for n in names:
            ins = [dom[p] for p in preds[n]] + ([{entry}] if n in starts else [])
            new = (set.intersection(*ins) if ins else set()) | {n}
            if new != dom[n]:
                dom[n], changed = new, True
    return dom


def _implies(user: When | None, producer: When) -> bool:
    """Whether every VM for which ``user``'s ``when`` holds also has ``producer``'s hold."""
    if user is None:
        return False
    if not set(producer.all) <= set(user.all):
        return False
    if not producer.any:
        return True
    return bool(set(producer.any) & set(user.all)) or \
        (bool(user.any) and set(user.any) <= set(producer.any))


def _strongly_connected(nodes: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm (recursive; itineraries have tens of states)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in succ[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            out.append(component)

    for node in nodes:
        if node not in index:
            visit(node)
    return out

