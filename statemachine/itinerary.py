"""Load an itinerary file into frozen dataclasses, after the JSON Schema and the semantic checks.

``load_itinerary("live")`` reads the built-in ``itineraries/live.yaml``; any other argument that
looks like a path is read as a file. Loading: YAML (:mod:`statemachine.yamlsource`) -> JSON Schema
(:mod:`statemachine.schema`) -> dataclasses -> the semantic checks listed at the end of
docs/itinerary.md (names, templates, outputs, reachability, loops, expressions that compile). All
problems found are raised together in one :class:`SchemaError`. The semantic checks are skipped
when a clean verdict on the same files is kept (:mod:`statemachine.itinerary_verdict`).

The dataclasses are the engine's only view of an itinerary: after loading nobody touches the raw
dicts. This module does not evaluate expressions or render templates (only compiles them to find
syntax errors); the flow graph helpers (:func:`flow_edges`) are shared with ``graph.py``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from statemachine.durations import parse_duration
from statemachine.errors import Problem, SchemaError
from statemachine.expressions import render_string
from statemachine.filekind import expect
from statemachine.resources import data_dir
from statemachine.schema import problems as schema_problems
from statemachine.yamlsource import DocPath, SourceDoc, load

__all__ = [
    "Itinerary", "StateSpec", "ReadSpec", "CheckSpec", "SetupSpec", "CommitSpec", "Action",
    "RefSpec", "ReadinessSpec", "ParameterSpec", "Condition", "RetrySpec", "NextSpec", "When", "Edge",
    "load_itinerary", "builtin_itineraries", "parse_duration", "parse_condition", "flow_edges",
    "BUILTIN_PREDICATES", "TERMINAL_STATES",
]

BUILTIN_PREDICATES = ("HasPreHook", "HasPostHook", "Intercluster")
TERMINAL_STATES = ("Completed", "Failed", "Canceled")
ClusterName = Literal["source", "target"]
ActionKind = Literal["apply", "ensure", "patch", "delete", "delete_created", "wait"]
_ACTION_KEYS = ("apply", "ensure", "patch", "delete", "wait")


# ---------------------------------------------------------------------------------------------
# the model

@dataclass(frozen=True)
class RefSpec:
    """An object reference whose strings are templates (``namespace`` None: cluster-scoped)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    cluster: ClusterName | None = None

    def render(self, ctx: Mapping[str, Any], *, where: str = "") -> RefSpec:
        """This reference with ``name`` and ``namespace`` rendered over ``ctx``."""
        ns = render_string(self.namespace, ctx, where=where) if self.namespace else None
        return RefSpec(self.api_version, self.kind, render_string(self.name, ctx, where=where),
                       ns or None, self.cluster)


@dataclass(frozen=True)
class Condition:
    """A readiness condition: the source text and the Jinja2 expression it stands for.

    ``kind`` records the form written: ``expression``, ``condition`` (``condition=T[=S]``, with
    ``condition_type``/``condition_status``), ``jsonpath``, ``delete`` or ``exists``.
    """

    source: str
    expression: str
    kind: Literal["expression", "condition", "jsonpath", "delete", "exists"] = "expression"
    condition_type: str | None = None
    condition_status: str | None = None
    where: str = ""


@dataclass(frozen=True)
class ReadinessSpec:
    object: RefSpec | None = None
    ready: Condition | None = None
    failed: Condition | None = None
    failed_for: float | None = None
    progress: str | None = None
    timeout: float | None = None
    message: str | None = None
    """A template shown instead of the condition while waiting, on failure and on time-out."""


@dataclass(frozen=True)
class Action:
    """One action. Which fields are set depends on ``kind`` (see docs/itinerary.md, Actions)."""

    kind: ActionKind
    template: str | None = None          # apply, ensure; patch with {template: file}
    object: RefSpec | None = None        # patch, delete
    patch_type: Literal["merge", "json"] | None = None
    patch: Any = None                    # patch VALUE (strings are templates)
    seconds: float | None = None         # wait: 30s
    seconds_expr: str | None = None      # wait: {seconds: EXPR}
    until: str | None = None             # wait: {until: EXPR}
    when: str | None = None
    cluster: ClusterName | None = None
    where: str = ""


@dataclass(frozen=True)
class RetrySpec:
    limit: int
    backoff: float = 10.0
    recreate: bool = True


@dataclass(frozen=True)
class NextSpec:
    to: str
    when: str | None = None


@dataclass(frozen=True)
class When:
    """``all``: every predicate true; ``any``: when non-empty, at least one true."""

    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadSpec:
    name: str
    object: RefSpec
    cluster: ClusterName = "target"
    for_each: str | None = None
    optional: bool = False
    when: str | None = None
    where: str = field(default="", compare=False)
    """``file:line: spec.reads[i]``, for errors at run time (a ``forEach`` that is undefined)."""


@dataclass(frozen=True)
class StateSpec:
    """One state. ``reads`` are resolved each time the state is entered (docs/itinerary.md)."""

    name: str
    description: str = ""
    step: str | None = None
    when: When | None = None
    cluster: ClusterName = "target"
    for_each: str | None = None
    actions: tuple[Action, ...] = ()
    readiness: ReadinessSpec | None = None
    timeout: float | None = None
    retry: RetrySpec | None = None
    outputs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    undo: tuple[Action, ...] = ()
    next: tuple[NextSpec, ...] = ()
    reads: tuple[ReadSpec, ...] = ()
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The state's own ``values``: name -> expression, in the order written, computed each time
    the state is entered, after its ``reads``; visible to this state only (``values.NAME``)."""
    where: str = ""

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL_STATES


@dataclass(frozen=True)
class CheckSpec:
    name: str
    check: str
    message: str
    severity: Literal["block", "warn"] = "block"
    for_each: str | None = None
    block_if: str | None = None
    when: str | None = None
    where: str = field(default="", compare=False)
    """``file:line: spec.preflight[i]``, for errors at run time."""


@dataclass(frozen=True)
class SetupSpec:
    reads: tuple[ReadSpec, ...] = ()
    states: tuple[StateSpec, ...] = ()


@dataclass(frozen=True)
class CommitSpec:
    after: str
    object: RefSpec
    condition: Condition
    cluster: ClusterName = "target"


@dataclass(frozen=True)
class ParameterSpec:
    """A parameter a plan may set (``spec.parameters``): ``schema`` is a JSON Schema."""

    name: str
    schema: Mapping[str, Any]
    default: Any = None
    has_default: bool = False
    description: str = ""


@dataclass(frozen=True)
class Itinerary:
    name: str
    migration_type: str | None
    """``spec.migrationType``: any DNS label (``cold``/``warm``/``live`` for the built-ins), or
    ``None``; shown to users and matched against a plan's ``type``."""
    states: tuple[StateSpec, ...]
    file: Path
    template_dir: Path
    description: str = ""
    pipeline: tuple[str, ...] = ()
    predicates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    reads: tuple[ReadSpec, ...] = ()
    preflight: tuple[CheckSpec, ...] = ()
    setup: SetupSpec = SetupSpec()
    commit: CommitSpec | None = None
    parameters: tuple[ParameterSpec, ...] = ()
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """``spec.values``: name -> expression, in the order written (``values.NAME``)."""
    includes: tuple[Path, ...] = ()
    """The fragment files ``spec.include`` brought in (transitively, each once), in order."""
    origins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """``values.NAME``/``predicates.NAME``/``reads.NAME`` -> the fragment file it was written
    in (names the itinerary file itself defines are not listed): see :meth:`file_of`."""
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    """What the semantic checks warn about (a ``step`` out of pipeline order); ``smrun
    validate`` prints them, nothing stops on them."""

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    def state(self, name: str) -> StateSpec:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    def file_of(self, kind: str, name: str) -> str:
        """The file that defines ``kind.name`` (``values``, ``predicates``, ``reads``): for
        messages at run time (``FILE: spec.values.NAME: ...``)."""
        return self.origins.get(f"{kind}.{name}", str(self.file))

    @property
    def predicate_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*BUILTIN_PREDICATES, *self.predicates]))


# ---------------------------------------------------------------------------------------------
# small parsers

_COND = re.compile(r"^condition=([A-Za-z0-9][A-Za-z0-9._/-]*)(?:=(.*))?$")
_JSONPATH = re.compile(r"^jsonpath=\{(\.[^}]*)\}(?:=(.*))?$")
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_condition(text: str, *, where: str = "") -> Condition:
    """Turn a condition (expression or kubectl-style shorthand) into a :class:`Condition`."""
    stripped = text.strip()
    if stripped == "delete":
        return Condition(text, "object is none", "delete", where=where)
    if stripped == "exists":
        return Condition(text, "object is not none", "exists", where=where)
    if stripped.startswith("condition="):
        match = _COND.match(stripped)
        if not match:
            raise ValueError(f"bad shorthand {text!r}: use condition=Type or condition=Type=Status")
        ctype, status = match.group(1), (match.group(2) or "True").strip()
        return Condition(text, f"condition_is(object, {ctype!r}, {status!r})", "condition",
                         ctype, status, where)
    if stripped.startswith("jsonpath="):
        match = _JSONPATH.match(stripped)
        if not match:
            raise ValueError(f"bad shorthand {text!r}: use jsonpath={{.status.phase}}=Value")
        access = _jsonpath_access(match.group(1), text)
        value = match.group(2)
        expr = (f"jsonpath_text({access}) == {value.strip()!r}" if value is not None
                else f"jsonpath_text({access}) != ''")
        return Condition(text, expr, "jsonpath", where=where)
    return Condition(text, text, "expression", where=where)


def _jsonpath_access(path: str, text: str) -> str:
    pos, out = 0, "object"
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        if not match:
            raise ValueError(f"bad jsonpath in {text!r} at {path[pos:]!r}")
        name, index, quoted = match.groups()
        key = name if name is not None else quoted
        if index is not None:
            out += f"[{index}]"
        elif key is not None and _IDENT.match(key):
            out += f".{key}"
        else:
            out += f"[{key!r}]"
        pos = match.end()
    return out


# ---------------------------------------------------------------------------------------------
# the flow graph (shared with graph.py)

@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: Literal["linear", "skip", "next"]
    label: str | None = None


def flow_edges(states: tuple[StateSpec, ...], *, skips: bool = True) -> list[Edge]:
    """Every possible transition. ``linear``: to the next listed state; ``skip``: further on,
    past states that have a ``when`` (included only with ``skips``); ``next``: explicit. A
    ``next`` target that has a ``when`` may be skipped too: the flow then goes on from it in list
    order, so the states after it are ``skip`` edges of the state that jumped."""
    edges: list[Edge] = []
    index = {s.name: i for i, s in enumerate(states)}

    def skipping_from(source: str, k: int) -> None:
        """Edges to the states after ``states[k]`` (which may be skipped), while they may be."""
        if not skips or states[k].when is None:
            return
        for j in range(k + 1, len(states)):
            edges.append(Edge(source, states[j].name, "skip"))
            if states[j].when is None:
                break

    for i, state in enumerate(states):
        if state.name == "Completed":
            continue
        for entry in state.next:
            edges.append(Edge(state.name, entry.to, "next", entry.when))
            if entry.to in index:
                skipping_from(state.name, index[entry.to])
        if any(entry.when is None for entry in state.next):
            continue  # an unconditional `next` always wins: no fall-through
        for j in range(i + 1, len(states)):
            edges.append(Edge(state.name, states[j].name, "linear" if j == i + 1 else "skip"))
            if states[j].when is None or not skips:
                break
    return edges


def start_states(states: tuple[StateSpec, ...]) -> list[str]:
    out = []
    for state in states:
        out.append(state.name)
        if state.when is None:
            break
    return out


# ---------------------------------------------------------------------------------------------
# loading

def load_itinerary(path_or_name: str | Path) -> Itinerary:
    """Load, validate and check an itinerary file, or a built-in one by name (``live``)."""
    from statemachine.itinerary_include import assemble

    path = _resolve(path_or_name)
    doc = load(path)
    expect(doc.data, doc.file, "Itinerary", doc.lines.get(("kind",)))
    # Fragments (spec.include) are merged in first: the schema, the builder and the checks see
    # one document whose lines point into the file each part came from.
    assembled = assemble(doc, path)
    doc = assembled.doc
    found = schema_problems(doc, "itinerary")
    if found:
        raise SchemaError(str(found[0]), found)
    builder = _Builder(doc, path)
    itinerary = replace(builder.build(), includes=assembled.includes,
                        origins=MappingProxyType(_origins(doc)))
    # The semantic checks, unless a clean verdict on these same files is kept (start-up time,
    # issue 17): itinerary_verdict says what the key covers. A builder problem is an error
    # already, so its checks run for the full list.
    from statemachine import itinerary_verdict

    key = None if builder.problems else itinerary_verdict.checks_key(itinerary, doc)
    warnings = itinerary_verdict.recall(key)
    if warnings is None:
        from statemachine.itinerary_checks import findings  # kept apart for size

        checked = findings(itinerary, doc)
        problems = builder.problems + checked.problems
        if problems:
            problems.sort(key=lambda p: (p.line or 0, p.path))
            raise SchemaError(str(problems[0]), problems)
        itinerary_verdict.remember(key, checked)
        warnings = tuple(checked.warnings)
    return replace(itinerary, warnings=warnings) if warnings else itinerary


def _origins(doc: SourceDoc) -> dict[str, str]:
    """The fragment file of each value, predicate and read a fragment brought in."""
    out: dict[str, str] = {}
    spec = doc.data["spec"]
    for kind in ("values", "predicates"):
        for name in spec.get(kind) or {}:
            file = doc.locate(("spec", kind, name))[0]
            if file != doc.file:
                out[f"{kind}.{name}"] = file
    for index, read in enumerate(spec.get("reads") or []):
        file = doc.locate(("spec", "reads", index))[0]
        if file != doc.file:
            out[f"reads.{read['name']}"] = file
    return out


def builtin_itineraries() -> list[tuple[str, str, Path]]:
    """``(name, description, path)`` of every built-in itinerary, sorted by name."""
    out = []
    for path in sorted(data_dir("itineraries").glob("*.yaml")):
        try:
            meta = (load(path).data or {}).get("metadata") or {}
            description = str(meta.get("description", ""))
        except (SchemaError, AttributeError):
            description = "(invalid file)"
        out.append((path.stem, description, path))
    return out


def _resolve(path_or_name: str | Path) -> Path:
    text = str(path_or_name)
    if isinstance(path_or_name, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        return Path(path_or_name)
    candidate = data_dir("itineraries") / f"{text}.yaml"
    if not candidate.is_file():
        names = ", ".join(n for n, _, _ in builtin_itineraries()) or "none"
        raise SchemaError(f"unknown itinerary {text!r} (built-in: {names})",
                          [Problem(text, "", f"unknown itinerary (built-in: {names})")])
    return candidate


class _Builder:
    """Raw (schema-valid) document -> dataclasses; records problems the schema cannot see."""

    def __init__(self, doc: SourceDoc, path: Path) -> None:
        self.doc = doc
        self.path = path
        self.problems: list[Problem] = []

    def where(self, path: DocPath) -> str:
        return self.doc.where(path)

    def fail(self, path: DocPath, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def build(self) -> Itinerary:
        raw: dict[str, Any] = self.doc.data
        spec: dict[str, Any] = raw["spec"]
        meta = raw["metadata"]
        sp: DocPath = ("spec",)
        setup_raw = spec.get("setup") or {}
        templates = spec.get("templates")
        template_dir = ((self.path.parent / templates).resolve() if templates
                        else data_dir("templates"))
        if templates and not template_dir.is_dir():
            self.fail((*sp, "templates"), f"template folder {str(template_dir)!r} does not exist")
        return Itinerary(
            name=meta["name"],
            description=meta.get("description", ""),
            migration_type=spec.get("migrationType"),
            file=self.path,
            template_dir=template_dir,
            pipeline=tuple(spec.get("pipeline") or ()),
            predicates=MappingProxyType(dict(spec.get("predicates") or {})),
            reads=tuple(self.read(r, (*sp, "reads", i)) for i, r in enumerate(spec.get("reads") or [])),
            preflight=tuple(self.check(c, (*sp, "preflight", i))
                            for i, c in enumerate(spec.get("preflight") or [])),
            setup=SetupSpec(
                reads=tuple(self.read(r, (*sp, "setup", "reads", i))
                            for i, r in enumerate(setup_raw.get("reads") or [])),
                states=tuple(self.state(s, (*sp, "setup", "states", i))
                             for i, s in enumerate(setup_raw.get("states") or []))),
            commit=self.commit(spec["commit"], (*sp, "commit")) if spec.get("commit") else None,
            states=tuple(self.state(s, (*sp, "states", i)) for i, s in enumerate(spec["states"])),
            parameters=tuple(ParameterSpec(p["name"], MappingProxyType(dict(p["schema"])),
                                           p.get("default"), "default" in p,
                                           p.get("description", ""))
                             for p in spec.get("parameters") or []),
            values=MappingProxyType(dict(spec.get("values") or {})),
        )

    def ref(self, raw: dict[str, Any]) -> RefSpec:
        return RefSpec(raw["apiVersion"], raw["kind"], raw["name"], raw.get("namespace"),
                       raw.get("cluster"))

    def read(self, raw: dict[str, Any], path: DocPath) -> ReadSpec:
        obj = self.ref(raw["object"])
        return ReadSpec(raw["name"], obj, raw.get("cluster") or obj.cluster or "target",
                        raw.get("forEach"), bool(raw.get("optional", False)), raw.get("when"),
                        where=self.where(path))

    def check(self, raw: dict[str, Any], path: DocPath) -> CheckSpec:
        return CheckSpec(raw["name"], raw["check"], raw["message"], raw.get("severity", "block"),
                         raw.get("forEach"), raw.get("blockIf"), raw.get("when"),
                         where=self.where(path))

    def commit(self, raw: dict[str, Any], path: DocPath) -> CommitSpec:
        obj = self.ref(raw["object"])
        return CommitSpec(raw["after"], obj, self.condition(raw["condition"], (*path, "condition")),
                          raw.get("cluster") or obj.cluster or "target")

    def condition(self, text: str, path: DocPath) -> Condition:
        try:
            return parse_condition(text, where=self.where(path))
        except ValueError as exc:
            self.fail(path, str(exc))
            return Condition(text, "false", where=self.where(path))

    def duration(self, value: Any, path: DocPath) -> float | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:  # the schema catches these first; kept for direct callers
            self.fail(path, str(exc))
            return None

    def state(self, raw: dict[str, Any], path: DocPath) -> StateSpec:
        when_raw = raw.get("when")
        readiness = raw.get("readiness")
        retry = raw.get("retry")
        return StateSpec(
            name=raw["name"],
            description=raw.get("description", ""),
            step=raw.get("step"),
            when=When(tuple(when_raw.get("all") or ()), tuple(when_raw.get("any") or ()))
            if when_raw else None,
            cluster=raw.get("cluster", "target"),
            for_each=raw.get("forEach"),
            actions=tuple(self.action(a, (*path, "actions", i))
                          for i, a in enumerate(raw.get("actions") or [])),
            readiness=self.readiness(readiness, (*path, "readiness")) if readiness is not None
            else None,
            timeout=self.duration(raw.get("timeout"), (*path, "timeout")),
            retry=RetrySpec(retry["limit"], self.duration(retry.get("backoff", 10),
                                                          (*path, "retry", "backoff")) or 0.0,
                            bool(retry.get("recreate", True))) if retry else None,
            outputs=MappingProxyType(dict(raw.get("outputs") or {})),
            undo=tuple(self.action(a, (*path, "undo", i)) for i, a in enumerate(raw.get("undo") or [])),
            next=tuple(NextSpec(n["to"], n.get("when")) for n in raw.get("next") or []),
            reads=tuple(self.read(r, (*path, "reads", i)) for i, r in enumerate(raw.get("reads") or [])),
            values=MappingProxyType(dict(raw.get("values") or {})),
            where=self.where(path),
        )

    def readiness(self, raw: dict[str, Any], path: DocPath) -> ReadinessSpec:
        return ReadinessSpec(
            object=self.ref(raw["object"]) if raw.get("object") else None,
            ready=self.condition(raw["ready"], (*path, "ready")) if "ready" in raw else None,
            failed=self.condition(raw["failed"], (*path, "failed")) if "failed" in raw else None,
            failed_for=self.duration(raw.get("failedFor"), (*path, "failedFor")),
            progress=raw.get("progress"),
            timeout=self.duration(raw.get("timeout"), (*path, "timeout")),
            message=raw.get("message"),
        )

    def action(self, raw: dict[str, Any], path: DocPath) -> Action:
        keys = [k for k in _ACTION_KEYS if k in raw]
        # The modifiers first; the action's own fields are filled in with replace() below.
        base = Action("wait", when=raw.get("when"), cluster=raw.get("cluster"),
                      where=self.where(path))
        if len(keys) != 1:
            self.fail(path, "an action needs exactly one of apply, ensure, patch, delete, wait"
                      + (f" (found {', '.join(keys)})" if keys else ""))
            return replace(base, seconds=0.0)
        key = keys[0]
        value = raw[key]
        if key in ("apply", "ensure"):
            template = value["template"] if isinstance(value, dict) else value
            return replace(base, kind="apply" if key == "apply" else "ensure", template=template)
        if key == "patch":
            body = value["patch"]
            patched = replace(base, kind="patch", object=self.ref(value["object"]),
                              patch_type=value.get("type", "merge"))
            if isinstance(body, dict) and set(body) == {"template"} and \
                    isinstance(body["template"], str):
                return replace(patched, template=body["template"])
            return replace(patched, patch=body)
        if key == "delete":
            if value == "created":
                return replace(base, kind="delete_created")
            return replace(base, kind="delete", object=self.ref(value))
        if isinstance(value, dict):
            return replace(base, seconds_expr=value.get("seconds"), until=value.get("until"))
        return replace(base, seconds=self.duration(value, (*path, "wait")))
