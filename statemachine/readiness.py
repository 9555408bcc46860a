"""Readiness as a pure function: is this live object ready, still pending, or failed?

Modelled on kstatus ``Compute``: ``evaluate(obj, spec, ctx)`` looks only at its arguments (the
object as last seen, ``None`` when absent, the state's :class:`ReadinessSpec` and the context) and
returns a :class:`Verdict` with a human message. ``failed`` is checked before ``ready`` (Argo's
order). It never fetches, watches or sleeps; the ``failedFor`` dwell needs a memory of when the
failure was first seen, which the engine keeps and passes to :func:`settle_failure`.

Messages name the clause and the observed values of the fields it reads, e.g.
``ready: object.status.phase == 'Succeeded' was false (object.status.phase = 'Running')``, found by
walking the expression's Jinja AST for attribute/item chains rooted at ``object``. Errors in an
expression (undefined variable, sandbox violation) propagate as :class:`TemplateError`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from jinja2 import nodes
from jinja2.parser import Parser

from statemachine.errors import TemplateError
from statemachine.expressions import condition as find_condition
from statemachine.expressions import evaluate as evaluate_expression
from statemachine.expressions import make_environment, render_string
from statemachine.itinerary import Condition, ReadinessSpec

__all__ = ["Verdict", "evaluate", "explain", "progress", "settle_failure", "timeout_message",
           "format_duration", "observed_paths"]

Status = Literal["ready", "pending", "failed"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one readiness evaluation and why."""

    status: Status
    message: str

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def evaluate(obj: Mapping[str, Any] | None, spec: ReadinessSpec | None,
             ctx: Mapping[str, Any], *, describe: bool = True) -> Verdict:
    """Judge ``obj`` (``None``: it does not exist) against ``spec``; ``failed`` first.

    Without a ``ready`` clause the object is ready as soon as it exists (a state that applies
    objects and declares no readiness completes when they exist). ``describe=False`` leaves
    out the explanation of a pending ``ready`` clause (its message is empty): the engine judges
    on every watch event and describes a wait only when it times out, and an explanation costs
    several more evaluations.
    """
    full = {**ctx, "object": obj}
    if spec is not None and spec.failed is not None and _holds(spec.failed, full):
        mine = author_message(spec, obj, ctx)
        if mine is not None:
            seen = observed(spec.failed, obj, ctx)
            return Verdict("failed", f"failed: {mine}" + (f" ({seen})" if seen else ""))
        return Verdict("failed", explain(spec.failed, obj, ctx, clause="failed"))
    if spec is None or spec.ready is None:
        if obj is not None:
            return Verdict("ready", "the object exists")
        return Verdict("pending", "waiting for the object to exist")
    if _holds(spec.ready, full):
        return Verdict("ready", f"ready: {spec.ready.source.strip()} holds")
    if not describe:
        return Verdict("pending", "")
    message = explain(spec.ready, obj, ctx, clause="ready")
    shown = progress(obj, spec, ctx)
    return Verdict("pending", f"{message}; progress: {shown}" if shown else message)


def _holds(cond: Condition, full: Mapping[str, Any]) -> bool:
    return bool(evaluate_expression(cond.expression, full, where=cond.where))


def progress(obj: Mapping[str, Any] | None, spec: ReadinessSpec | None,
             ctx: Mapping[str, Any]) -> str:
    """The state's ``progress`` expression as text ('' when none or when it yields nothing)."""
    if spec is None or not spec.progress:
        return ""
    try:
        value = evaluate_expression(spec.progress, {**ctx, "object": obj})
    except TemplateError as exc:
        # Progress is informative only: a broken expression must not fail the wait.
        return f"(progress expression failed: {exc})"
    return "" if value is None else str(value)


def author_message(spec: ReadinessSpec | None, obj: Mapping[str, Any] | None,
                   ctx: Mapping[str, Any]) -> str | None:
    """The readiness ``message`` rendered over ``ctx`` and ``object``, or ``None`` without one.

    A message that fails to render (a field the object does not have yet) says so instead: the
    wait's own outcome must not turn into a template error."""
    if spec is None or spec.message is None:
        return None
    try:
        return " ".join(render_string(spec.message, {**ctx, "object": obj}).split())
    except TemplateError as exc:
        return f"(readiness message failed: {exc})"


def observed(condition: Condition, obj: Mapping[str, Any] | None, ctx: Mapping[str, Any]) -> str:
    """``a.b = 1, c = 'x'``: the values the condition reads from the object ('' if none)."""
    if obj is None:
        return "the object does not exist"
    if condition.kind in ("delete", "exists"):
        return "the object exists"
    if condition.kind == "condition":
        return _describe_condition(obj, condition.condition_type)
    full = {**ctx, "object": obj}
    seen = []
    for path in observed_paths(condition.expression):
        try:
            value = evaluate_expression(path, full)
        except TemplateError:
            continue
        seen.append(f"{path} = {_show(value)}")
    return ", ".join(seen)


def explain(condition: Condition, obj: Mapping[str, Any] | None, ctx: Mapping[str, Any], *,
            clause: str = "ready") -> str:
    """``<clause>: <condition> was true|false (<observed values>)``."""
    verdict = "was true" if _holds(condition, {**ctx, "object": obj}) else "was false"
    seen = observed(condition, obj, ctx)
    return f"{clause}: {condition.source.strip()} {verdict}" + (f" ({seen})" if seen else "")


def _describe_condition(obj: Mapping[str, Any] | None, ctype: str | None) -> str:
    cond = find_condition(obj, ctype or "")
    if cond is None:
        return f"no {ctype} condition"
    parts = [f"status={cond.get('status')}"]
    for key in ("reason", "message"):
        if cond.get(key):
            parts.append(f"{key}={_clip(str(cond[key]))}")
    return f"condition {cond.get('type', ctype)}: {', '.join(parts)}"


@lru_cache(maxsize=1024)
def observed_paths(expression: str) -> tuple[str, ...]:
    """The attribute/item chains rooted at ``object`` that ``expression`` reads, in order."""
    env = make_environment(expressions=True)
    try:
        tree = Parser(env, expression, state="variable").parse_expression()
    except Exception:  # noqa: BLE001 - a broken expression simply has nothing to show
        return ()
    found: list[str] = []
    _collect(tree, found)
    return tuple(dict.fromkeys(found))


def _collect(node: nodes.Node, found: list[str]) -> None:
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        text = _chain(node)
        if text is not None:
            found.append(text)
            # still look inside subscripts (object.a[object.b]) for more chains
            if isinstance(node, nodes.Getitem):
                _collect(node.arg, found)
            return
    for child in node.iter_child_nodes():
        _collect(child, found)


def _chain(node: nodes.Node) -> str | None:
    """``object.a['b-c'][0]`` for a Getattr/Getitem chain rooted at ``object``, else None."""
    if isinstance(node, nodes.Name):
        return "object" if node.name == "object" else None
    if isinstance(node, nodes.Getattr):
        base = _chain(node.node)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        base = _chain(node.node)
        if base is None or not isinstance(node.arg, nodes.Const):
            return base if base is not None and base != "object" else None
        key = node.arg.value
        if isinstance(key, str) and key.isidentifier():
            return f"{base}.{key}"
        return f"{base}[{key!r}]"
    return None


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return repr(_clip(value))
    if isinstance(value, (dict, list)):
        return _clip(json.dumps(value, separators=(", ", ": "), default=str))
    return _clip(str(value))


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def settle_failure(verdict: Verdict, *, now: float, first_failed_at: float | None,
                   failed_for: float | None) -> tuple[Verdict, float | None]:
    """Apply the ``failedFor`` dwell: a failure counts only after holding ``failed_for`` seconds.

    Returns the verdict to act on and the new ``first_failed_at`` for the engine to keep (``None``
    once the failed condition no longer holds, so a blip resets the clock).
    """
    if verdict.status != "failed":
        return verdict, None
    start = now if first_failed_at is None else first_failed_at
    if not failed_for or now - start >= failed_for:
        return verdict, start
    held = format_duration(now - start)
    return (Verdict("pending", f"{verdict.message} (for {held} of {format_duration(failed_for)})"),
            start)


def timeout_message(state: str, waited: float, obj: Mapping[str, Any] | None,
                    spec: ReadinessSpec | None, ctx: Mapping[str, Any]) -> str:
    """``<state>: timed out after 10m: ready: ... was false (...)`` for :class:`ReadinessTimeout`;
    with a readiness ``message``: ``<state>: timed out after 10m: <message> (<observed values>)``."""
    mine = author_message(spec, obj, ctx)
    if mine is not None:
        seen = observed(spec.ready, obj, ctx) if spec is not None and spec.ready is not None else ""
        return f"{state}: timed out after {format_duration(waited)}: {mine}" + \
            (f" ({seen})" if seen else "")
    if spec is not None and spec.ready is not None:
        why = explain(spec.ready, obj, ctx, clause="ready")
    elif obj is None:
        why = "the object does not exist"
    elif spec is not None and spec.failed is not None:
        # No ready clause and the object exists: only a failure held within its dwell kept it.
        why = f"failed: {spec.failed.source.strip()} did not clear"
    else:
        why = "the object exists"
    return f"{state}: timed out after {format_duration(waited)}: {why}"


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``42.5`` -> ``42s``; ``0.3`` -> ``0.3s``; ``0`` -> ``0s``.

    The one duration format users see (time-outs, dwells, progress). Under a second the value is
    kept (a test's or a tight wait's 0.3 s must not read as ``0s``); above, whole seconds.
    """
    if 0 < seconds < 1:
        return f"{seconds:.3g}s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + \
        (f"{secs}s" if secs else "")
    return text or "0s"
