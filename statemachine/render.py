"""Render what a plan would apply, state by state, without touching a cluster.

For each VM of a plan (and once for the itinerary's ``setup``): resolve the itinerary's ``reads``
from a :class:`ReadSource`, evaluate the predicates, then render every enabled state's ``apply``
and ``ensure`` templates (``forEach`` expanded) into :class:`RenderedManifest` records. Patches and
deletes are recorded too (action ``patch``/``delete``) so ``smrun render`` can show them; they are
not manifests and are printed as comments.

Decisions recorded here:

- **Outputs are unknown before a run.** ``outputs`` is a mapping that answers any name it does not
  know with the visible placeholder ``<output:NAME>`` (:class:`PendingOutputs`), so a template
  that uses ``outputs.connectURL`` renders and shows where the value will go.
- **State reads are resolved when the state is rendered** (each state's ``reads``, merged over the
  VM's). A state read usually names an object an earlier state makes (the export's token Secret),
  so before a run it is often absent: a missing non-optional state read renders as the visible
  placeholder ``<read:NAME>`` (:class:`PendingRead`; its fields are placeholders too), not as an
  error, mirroring the engine, which waits for it. A missing optional one is ``none``.
- ``when`` of an action is evaluated like the engine does; with placeholders an output-dependent
  ``when`` is truthy, so ``render`` shows the manifest (showing too much beats hiding a template
  error).
- **Offline reads.** ``statemachine.sim.offline.SeedReads`` answers reads from a simulation seed
  file; this is how ``smrun render`` works for a simulated plan with no cluster. It lives with the
  simulator so that this pure layer never imports it. A required read that the source lacks is a
  definition error.
- Every rendered document must have ``apiVersion``, ``kind`` and ``metadata.name``
  (``TemplateError`` naming the template otherwise). Labels are *not* stamped here: the engine
  stamps them when it applies.
- **Secrets never print.** :func:`format_manifests` masks every value under a Secret's ``data``
  and ``stringData`` unless ``show_secrets``; the in-memory manifests stay intact (tests validate
  them against the OpenAPI schemas).

It does not apply anything, evaluate readiness, or import the ``kubernetes`` client.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from statemachine.context import DEFAULT_RUN_ID, setup_context, vm_context, with_item
from statemachine.errors import DefinitionError, SchemaError, TemplateError
from statemachine.expressions import evaluate, render_text, render_value
from statemachine.itinerary import Action, Itinerary, ReadSpec, RefSpec, StateSpec
from statemachine.parameters import (LazyValues, ValuesMemo, bind_parameters,
                                     compute_state_values, compute_values, with_values)
from statemachine.plan import VM, Plan
from statemachine.yamlsource import load_all_text

__all__ = ["MASK", "PendingOutputs", "PendingRead", "ReadSource", "RenderedManifest",
           "disabled_states", "format_manifests", "mask_secrets", "render_plan", "render_setup",
           "render_patch", "render_vm", "resolve_reads", "resolve_vm_reads", "state_contexts",
           "vm_render_context"]

MASK = "<masked>"

# Rendered manifests are parsed by yamlsource.load_all_text: libyaml's loader when PyYAML has it
# (the same safe constructors and YAML 1.1 resolution, about 12x faster on a rendered VM than the
# pure-Python one; parsing was most of the engine's CPU per apply and of preflight,
# docs/performance.md), with the input limits every YAML smrun reads has.


class ReadSource(Protocol):
    """Where ``reads`` come from: a live cluster (engine) or a seed file (``SeedReads``)."""

    def get(self, cluster: str, api_version: str, kind: str, namespace: str,
            name: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist. ``namespace`` is ``""`` when cluster-scoped."""
        ...


@dataclass(frozen=True)
class RenderedManifest:
    """One thing a state would do. ``manifest`` is the rendered object for ``apply``/``ensure``;
    for ``patch`` it is ``{object: REF, type, patch}``, for ``delete`` ``{object: REF}``."""

    state: str
    cluster: str
    action: str
    manifest: dict[str, Any]
    vm: str | None = None
    """``namespace/name`` of the VM, ``None`` for setup states."""
    index: int | None = None
    """The ``forEach`` index, ``None`` outside ``forEach``."""
    template: str | None = None


class PendingOutputs(dict[str, Any]):
    """Outputs of states that have not run: unknown names render as ``<output:NAME>``."""

    def __missing__(self, key: str) -> str:
        return f"<output:{key}>"


class PendingRead(str):
    """A state read that cannot be resolved before the run: ``<read:NAME>``; every field of it
    (``.data.token``, ``['x']``) is a placeholder naming its path, so templates still render.

    A ``str`` so that filters (``b64decode``, ``tojson``) and string concatenation accept it.
    """

    def __new__(cls, path: str) -> PendingRead:
        return super().__new__(cls, f"<read:{path}>")

    @property
    def path(self) -> str:
        return str.__str__(self)[len("<read:"):-1]

    def __getattr__(self, name: str) -> PendingRead:
        if name.startswith("_"):
            raise AttributeError(name)
        return PendingRead(f"{self.path}.{name}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return PendingRead(f"{self.path}.{key}")
        return str.__getitem__(self, key)


# -- reads --------------------------------------------------------------------------------------

def _read_one(source: ReadSource, spec: ReadSpec, ctx: Mapping[str, Any], where: str,
              pending: bool = False) -> Any:
    ref = spec.object.render(ctx, where=where)
    cluster = ref.cluster or spec.cluster
    obj = source.get(cluster, ref.api_version, ref.kind, ref.namespace or "", ref.name)
    if obj is None and not spec.optional and pending:
        return PendingRead(spec.name)
    if obj is None and not spec.optional:
        at = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
        origin = getattr(source, "file", None)
        found_in = f" in {origin}" if origin else ""
        raise DefinitionError(f"{where}: {ref.kind} {at} not found on the "
                              f"{cluster} cluster{found_in}")
    return obj


def resolve_reads(specs: Iterable[ReadSpec], ctx: Mapping[str, Any], source: ReadSource, *,
                  where: str = "", pending: bool = False,
                  values_of: Itinerary | None = None, state: str | None = None,
                  memo: ValuesMemo | None = None) -> dict[str, Any]:
    """Resolve ``reads`` in order; each read sees the ones before it (``reads.sourceVM``...).

    With ``pending`` (state reads), a missing non-optional object is a :class:`PendingRead`
    instead of a :class:`DefinitionError`. The result holds only the reads of ``specs``;
    ``state`` names the state they belong to, in errors. ``memo`` (with ``values_of``): the
    VM's values computed so far, reused over the reads they do not depend on.
    """
    outer: Mapping[str, Any] = (ctx.get("reads") or {}) if pending else {}
    reads: dict[str, Any] = {}
    for spec in specs:
        local = {**ctx, "reads": {**outer, **reads}}
        if values_of is not None:  # the VM's reads: values over the reads so far
            local["values"] = LazyValues(values_of, local, memo)
        label = f"{where}reads.{spec.name}"
        if values_of is not None and f"reads.{spec.name}" in values_of.origins:
            label = f"{values_of.origins['reads.' + spec.name]}: reads.{spec.name}"  # a fragment's
        if spec.when is not None and not evaluate(spec.when, local, where=label):
            reads[spec.name] = None
            continue
        if spec.for_each is None:
            reads[spec.name] = _read_one(source, spec, local, label, pending)
            continue
        items = for_each_items(spec.for_each, local, where=f"{spec.where or label}.forEach",
                               state=state)
        reads[spec.name] = [_read_one(source, spec, with_item(local, item, i), label, pending)
                            for i, item in enumerate(items)]
    return reads


def for_each_items(expr: str, ctx: Mapping[str, Any], *, where: str,
                   state: str | None = None) -> list[Any]:
    """The items a ``forEach`` loops over (a state's, a read's, a preflight check's): the one
    code path for rendering, the engine's states and reads, preflight and render-ahead.

    ``null`` is no items (an optional read that is absent). An *undefined* value, a field that
    is not there, is an error naming it with a "did you mean" from the keys the object has, not
    a loop that silently runs zero times: ``reads.sourceVM.spec.volumez`` would otherwise look
    like a VM without volumes and fail states later with an unrelated "not found". A field that
    may be absent is written with ``| default([])``, the author's explicit choice (the static
    check of :mod:`statemachine.fieldpaths` still catches a name no schema has)."""
    in_state = f" in state {state!r}" if state else ""
    try:
        value = evaluate(expr, ctx, where=where, defined=True)
    except TemplateError as exc:
        if not in_state:
            raise
        raise type(exc)(f"{exc}{in_state}") from None
    if value is None:
        return []
    if isinstance(value, PendingRead):
        # Before the run a state read is a placeholder: one placeholder item renders the
        # manifests (showing them beats refusing a forEach over what the run will read).
        return [value]
    if isinstance(value, Mapping) or isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TemplateError(f"{where}: forEach must give a list, not {type(value).__name__}"
                            f"{in_state}")
    return list(value)


# -- predicates ---------------------------------------------------------------------------------

def _predicates(itinerary: Itinerary, ctx: Mapping[str, Any]) -> dict[str, bool]:
    from statemachine.predicates import evaluate_all

    return dict(evaluate_all(itinerary, ctx))


def _enabled(state: StateSpec, predicates: Mapping[str, bool]) -> bool:
    from statemachine.predicates import state_enabled

    return bool(state_enabled(state, predicates))


def disabled_states(plan: Plan, itinerary: Itinerary, vm: VM,
                    source: ReadSource | None = None) -> set[str]:
    """Names of the states the VM's predicates switch off (for ``smrun graph --plan --vm``).

    Without a read source the reads are empty: predicates over reads then see missing fields.
    """
    ctx = vm_context(plan, vm)
    reads = resolve_vm_reads(itinerary, ctx, source) if source else {}
    predicates = _predicates(itinerary, with_values(itinerary, {**ctx, "reads": reads}))
    return {s.name for s in itinerary.states if not _enabled(s, predicates)}


# -- rendering ----------------------------------------------------------------------------------

def _where(itinerary: Itinerary) -> str:
    return f"{itinerary.file}: "


def state_contexts(state: StateSpec, ctx: Mapping[str, Any],
                   source: ReadSource) -> list[tuple[int | None, Mapping[str, Any]]]:
    """The contexts ``state`` runs in for one VM (or setup): ``ctx`` plus the state's own reads
    and values, then one per ``forEach`` item (``(index, context)``; index None without one)."""
    here = f"{state.where}: " if state.where else f"{state.name}: "
    if state.reads:
        own = resolve_reads(state.reads, ctx, source, where=here, pending=True, state=state.name)
        ctx = {**ctx, "reads": {**(ctx.get("reads") or {}), **own}}
    if state.values:
        ctx = {**ctx, "values": {**(ctx.get("values") or {}), **compute_state_values(state, ctx)}}
    if state.for_each is None:
        return [(None, ctx)]
    where = f"{state.where}.forEach" if state.where else f"{state.name}.forEach"
    items = for_each_items(state.for_each, ctx, where=where, state=state.name)
    return [(i, with_item(ctx, item, i)) for i, item in enumerate(items)]


def _render_state(itinerary: Itinerary, state: StateSpec, ctx: Mapping[str, Any],
                  vm: str | None, source: ReadSource) -> list[RenderedManifest]:
    out: list[RenderedManifest] = []
    for index, local in state_contexts(state, ctx, source):
        for action in state.actions:
            try:
                out.extend(_render_action(itinerary, state, action, local, vm, index))
            except TemplateError as exc:
                # Say which action (itinerary file, line, field) and VM the template failed for.
                if not action.where or str(exc).startswith(action.where):
                    raise
                suffix = f" (VM {vm})" if vm else ""
                raise type(exc)(f"{action.where}: {exc}{suffix}") from None
    return out


def _render_action(itinerary: Itinerary, state: StateSpec, action: Action, ctx: Mapping[str, Any],
                   vm: str | None, index: int | None) -> list[RenderedManifest]:
    if action.when is not None and not evaluate(action.when, ctx, where=f"{action.where}.when"):
        return []
    cluster = action.cluster or state.cluster
    if action.kind in ("apply", "ensure") and action.template:
        return [RenderedManifest(state.name, cluster, action.kind, doc, vm, index, action.template)
                for doc in render_documents(action.template, ctx, template_dir=itinerary.template_dir)]
    if action.kind == "patch" and action.object is not None:
        ref = _ref_value(action.object.render(ctx, where=action.where))
        if action.template:
            body = render_patch(action.template, ctx, template_dir=itinerary.template_dir)
        else:
            body = render_value(action.patch, ctx, where=action.where)
        return [RenderedManifest(state.name, action.object.cluster or cluster, "patch",
                                 {"object": ref, "type": action.patch_type or "merge", "patch": body},
                                 vm, index, action.template)]
    if action.kind == "delete" and action.object is not None:
        ref = _ref_value(action.object.render(ctx, where=action.where))
        return [RenderedManifest(state.name, action.object.cluster or cluster, "delete",
                                 {"object": ref}, vm, index)]
    return []  # waits and `delete: created` have nothing to show


def _ref_value(ref: RefSpec) -> dict[str, Any]:
    out = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
    return out


def _parse_yaml(text: str, template: str) -> list[Any]:
    """The documents of a rendered template, within yamlsource's input limits (size, characters,
    nesting, aliases): a template that renders an alias bomb is refused like a plan that is one."""
    try:
        return load_all_text(text, template)
    except SchemaError as exc:
        problem = exc.problems[0] if exc.problems else None
        message = problem.message if problem is not None else str(exc)
        message = ("rendered " + message if message.startswith("invalid YAML")
                   else f"rendered YAML refused: {message}")
        if problem is not None and problem.line:
            message += f" (rendered line {problem.line})"
        raise TemplateError(f"{template}: {' '.join(message.split())[:300]}") from None


def render_documents(template: str, ctx: Mapping[str, Any], *,
                     template_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """Render ``template`` and parse its YAML documents; each must be a Kubernetes object."""
    text = render_text(template, ctx, template_dir=template_dir)
    docs = [d for d in _parse_yaml(text, template) if d is not None]
    for i, doc in enumerate(docs):
        where = f"{template}: document {i + 1}" if len(docs) > 1 else template
        if not isinstance(doc, dict):
            raise TemplateError(f"{where}: rendered a {type(doc).__name__}, not a Kubernetes object")
        missing = [f for f in ("apiVersion", "kind") if not doc.get(f)]
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            missing.append("metadata.name")
        if missing:
            raise TemplateError(f"{where}: rendered object has no {', '.join(missing)}")
    return docs


def render_patch(template: str, ctx: Mapping[str, Any], *,
                 template_dir: Path | str | None = None) -> Any:
    """Render a ``patch: {template: ...}`` file: one YAML document (a mapping for a merge patch,
    a list of operations for a JSON patch), not a Kubernetes object."""
    docs = _parse_yaml(render_text(template, ctx, template_dir=template_dir), template)
    if len(docs) > 1:
        raise TemplateError(f"{template}: rendered {len(docs)} YAML documents; a patch is one")
    return docs[0] if docs else None


def render_setup(plan: Plan, itinerary: Itinerary, source: ReadSource, *,
                 run_id: str = DEFAULT_RUN_ID) -> list[RenderedManifest]:
    """What ``spec.setup`` would do, once for the plan."""
    if not itinerary.setup.states:
        return []
    ctx = setup_context(plan, outputs=PendingOutputs(), run_id=run_id)
    reads = resolve_reads(itinerary.setup.reads, ctx, source, where=_where(itinerary) + "setup.")
    ctx = {**ctx, "reads": reads}
    out: list[RenderedManifest] = []
    for state in itinerary.setup.states:
        out.extend(_render_state(itinerary, state, ctx, None, source))
    return out


def resolve_vm_reads(itinerary: Itinerary, ctx: Mapping[str, Any],
                     source: ReadSource, memo: ValuesMemo | None = None) -> dict[str, Any]:
    """The itinerary's per-VM ``reads`` for ``ctx`` (errors name the itinerary file);
    ``memo``: the VM's :class:`ValuesMemo`, to compute each value once where it can."""
    return resolve_reads(itinerary.reads, ctx, source, where=_where(itinerary),
                         values_of=itinerary, memo=memo)


def vm_render_context(plan: Plan, itinerary: Itinerary, vm: VM, source: ReadSource, *,
                      run_id: str = DEFAULT_RUN_ID, reads: Mapping[str, Any] | None = None,
                      servers: Mapping[str, str] | None = None,
                      base: Mapping[str, Any] | None = None,
                      memo: ValuesMemo | None = None) -> dict[str, Any]:
    """A VM's context before its first state: reads, values, predicates, pending outputs.
    ``servers``: the clusters' API servers (``clusters.*.server``), when known. ``base``: the
    VM's :func:`vm_context` for ``run_id`` and ``servers`` (no reads, outputs or predicates),
    when the caller has built it: values over its objects are then taken from ``memo``."""
    ctx = dict(base) if base is not None else vm_context(plan, vm, run_id=run_id, servers=servers)
    if reads is None:
        reads = resolve_vm_reads(itinerary, ctx, source, memo)
    values = compute_values(itinerary, {**ctx, "reads": reads}, memo)
    predicates = _predicates(itinerary, {**ctx, "reads": reads, "values": values})
    ctx = vm_context(plan, vm, reads=reads, outputs=PendingOutputs(), predicates=predicates,
                     run_id=run_id, servers=servers)
    ctx["values"] = values
    return ctx


def render_vm(plan: Plan, itinerary: Itinerary, vm: VM, source: ReadSource, *,
              run_id: str = DEFAULT_RUN_ID, reads: Mapping[str, Any] | None = None,
              context: Mapping[str, Any] | None = None) -> list[RenderedManifest]:
    """What every enabled state would do for ``vm``, in itinerary order. ``reads``: the VM's
    reads when the caller has resolved them already; ``context``: its whole
    :func:`vm_render_context` when the caller has built it (preflight does, for its checks
    and the engine)."""
    ctx = context if context is not None else vm_render_context(plan, itinerary, vm, source,
                                                                run_id=run_id, reads=reads)
    predicates = ctx["predicates"]
    out: list[RenderedManifest] = []
    for state in itinerary.states:
        if _enabled(state, predicates):
            out.extend(_render_state(itinerary, state, ctx, vm.ref, source))
    return out


def render_plan(plan: Plan, itinerary: Itinerary, source: ReadSource, *,
                vms: Sequence[str] | None = None, run_id: str = DEFAULT_RUN_ID) -> list[RenderedManifest]:
    """Setup (once) then every selected VM (``vms``: names or ``namespace/name``; default all)."""
    plan = bind_parameters(plan, itinerary)
    selected = [plan.vm(name) for name in vms] if vms else list(plan.vms)
    out = render_setup(plan, itinerary, source, run_id=run_id)
    for vm in selected:
        out.extend(render_vm(plan, itinerary, vm, source, run_id=run_id))
    return out


# -- output -------------------------------------------------------------------------------------

def mask_secrets(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` whose Secret ``data``/``stringData`` values are replaced by ``MASK``."""
    out = dict(manifest)
    if out.get("kind") == "Secret" and str(out.get("apiVersion")) == "v1":
        for field in ("data", "stringData"):
            value = out.get(field)
            if isinstance(value, Mapping):
                out[field] = {k: MASK for k in value}
            elif value is not None:
                out[field] = MASK
    return out


def format_manifests(manifests: Iterable[RenderedManifest], *, show_secrets: bool = False) -> str:
    """Multi-document YAML; each document is preceded by a comment naming VM, state and action.

    Patches and deletes are shown as comments only, so every document is a whole object.
    """
    parts: list[str] = []
    pending: list[str] = []
    for m in manifests:
        head = f"# {m.vm or 'setup'}: {m.state}"
        head += f"[{m.index}]" if m.index is not None else ""
        head += f" ({m.action} on {m.cluster}"
        head += f", {m.template})" if m.template else ")"
        if m.action in ("apply", "ensure"):
            body = m.manifest if show_secrets else mask_secrets(m.manifest)
            text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True)
            parts.append("\n".join([*pending, head, text.rstrip("\n")]) + "\n")
            pending = []
        else:
            shown = m.manifest
            if not show_secrets and m.action == "patch" and shown["object"].get("kind") == "Secret":
                shown = {**shown, "patch": MASK}  # a patch of a Secret carries secret values
            # One JSON line: flow-style YAML would break multi-line values over comment lines.
            pending.extend([head, f"#   {json.dumps(shown, ensure_ascii=False)}"])
    if pending:
        parts.append("\n".join(pending) + "\n")
    return "---\n".join(parts)
