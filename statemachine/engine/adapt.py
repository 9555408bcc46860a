"""Bridges from smrun's loaders to the engine: Itinerary → :class:`Flow`, Plan → contexts, labels.

The engine core works on :mod:`statemachine.engine.flow`; this module is the one place that knows
the field names of ``statemachine.itinerary`` and ``statemachine.plan``, and the one place that
calls ``statemachine.context`` and ``statemachine.predicates``. It evaluates nothing itself except
the built-in predicates' fallback.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine.engine.flow import (
    ActionT,
    CheckT,
    CommitT,
    Flow,
    NextT,
    ReadinessT,
    ReadT,
    RefT,
    RetryT,
    StateT,
)


def _ref(ref: Any, default_cluster: str | None = None) -> RefT:
    return RefT(ref.api_version, ref.kind, ref.name, ref.namespace or "",
                ref.cluster or default_cluster)


def _action(a: Any) -> ActionT:
    seconds: Any = a.seconds if a.seconds is not None else a.seconds_expr
    return ActionT(kind=a.kind, template=a.template, ref=_ref(a.object) if a.object else None,
                   patch=({"template": a.template} if a.kind == "patch" and a.template else a.patch),
                   patch_type=a.patch_type or "merge", seconds=seconds, until=a.until, when=a.when,
                   cluster=a.cluster)


def _readiness(r: Any, cluster: str) -> ReadinessT:
    return ReadinessT(ready=r.ready.source if r.ready else None,
                      failed=r.failed.source if r.failed else None,
                      failed_for=r.failed_for, progress=r.progress, timeout=r.timeout,
                      object=_ref(r.object, cluster) if r.object else None, spec=r)


def _state(s: Any) -> StateT:
    when = s.when
    return StateT(
        name=s.name, step=s.step or "", when_all=tuple(when.all) if when else (),
        when_any=tuple(when.any) if when else (), cluster=s.cluster, for_each=s.for_each,
        actions=tuple(_action(a) for a in s.actions),
        readiness=_readiness(s.readiness, s.cluster) if s.readiness else None,
        timeout=s.timeout,
        retry=RetryT(s.retry.limit, s.retry.backoff, s.retry.recreate) if s.retry else None,
        outputs=dict(s.outputs), undo=tuple(_action(a) for a in s.undo),
        next=tuple(NextT(n.to, n.when) for n in s.next),
        reads=tuple(_read(r) for r in getattr(s, "reads", ())))


def _read(r: Any) -> ReadT:
    return ReadT(r.name, r.cluster, _ref(r.object, r.cluster), r.for_each, r.optional, r.when)


def flow_from_itinerary(it: Any) -> Flow:
    """The engine's view of a loaded ``statemachine.itinerary.Itinerary``."""
    commit = None
    if it.commit is not None:
        c = it.commit
        commit = CommitT(c.after, c.cluster, _ref(c.object, c.cluster), c.condition.source)
    checks = tuple(CheckT(c.name, c.check, c.message, c.severity, c.for_each, c.block_if)
                   for c in it.preflight)
    return Flow(name=it.name, states=tuple(_state(s) for s in it.states),
                reads=tuple(_read(r) for r in it.reads), predicates=dict(it.predicates),
                commit=commit, checks=checks,
                setup_states=tuple(_state(s) for s in it.setup.states),
                setup_reads=tuple(_read(r) for r in it.setup.reads), source=it)


def context_builder(servers: Mapping[str, str] | None = None) -> Any:
    """A ``ContextBuilder`` over ``statemachine.context`` for a real ``Plan``."""
    from statemachine import context

    def build(plan: Any, vm: Any, run: Mapping[str, Any]) -> dict[str, Any]:
        if vm is None:
            return context.setup_context(plan, run_id=str(run["id"]), servers=servers)
        return context.vm_context(plan, vm, run_id=str(run["id"]), servers=servers)

    return build


def labels_builder(plan: Any) -> Any:
    from statemachine import context

    def labels(vm: Any, state: str, run_id: str) -> dict[str, str]:
        return dict(context.labels_for(plan, vm, run_id=run_id, state=state))

    return labels


def builtin_predicates(ctx: Mapping[str, Any]) -> dict[str, bool]:
    hooks = (ctx.get("vm") or {}).get("hooks") or []
    return {"HasPreHook": any(h.get("step") == "PreHook" for h in hooks),
            "HasPostHook": any(h.get("step") == "PostHook" for h in hooks),
            "Intercluster": bool((ctx.get("clusters") or {}).get("intercluster"))}


def predicate_evaluator() -> Any:
    """``statemachine.predicates.evaluate_all`` when present, else built-ins + itinerary expressions."""
    try:
        from statemachine import predicates as mod
    except ImportError:
        mod = None  # type: ignore[assignment]

    def evaluate(flow: Flow, ctx: Mapping[str, Any]) -> dict[str, bool]:
        if mod is not None and flow.source is not None:
            return {k: bool(v) for k, v in mod.evaluate_all(flow.source, dict(ctx)).items()}
        from statemachine import expressions
        values = builtin_predicates(ctx)
        for name, expr in flow.predicates.items():
            values[name] = bool(expressions.evaluate(expr, dict(ctx)))
        return values

    return evaluate
