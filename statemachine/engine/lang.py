"""The engine's seam to the itinerary language: templates, expressions and readiness verdicts.

:class:`Language` is what the engine calls; :class:`DefaultLanguage` implements it with smrun's
own sandboxed ``statemachine.expressions`` and pure ``statemachine.readiness`` modules. Tests may
inject a smaller implementation. Nothing here touches a cluster.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from statemachine import expressions, render
from statemachine import readiness as rd
from statemachine.engine.flow import ReadinessT
from statemachine.itinerary import Condition, parse_condition

Status = Literal["ready", "pending", "failed"]


class Language(Protocol):
    def evaluate(self, expr: str, ctx: Mapping[str, Any]) -> Any:
        """Evaluate an expression (predicates, forEach, outputs, next.when, wait seconds)."""
        ...

    def render_manifests(self, template: str, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Render a template file into its YAML documents."""
        ...

    def render_value(self, value: Any, ctx: Mapping[str, Any]) -> Any:
        """Render every string inside a YAML value."""
        ...

    def render_patch(self, template: str, ctx: Mapping[str, Any]) -> Any:
        """Render a patch template file into its one YAML document."""
        ...

    def readiness(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                  ctx: Mapping[str, Any]) -> tuple[Status, str]:
        """``failed`` checked before ``ready``; returns (status, message). The message explains
        a failure; a pending verdict's may be empty (the engine asks :meth:`explain` on timeout)."""
        ...

    def explain(self, clause: str, condition: str, obj: Mapping[str, Any] | None,
                ctx: Mapping[str, Any]) -> str:
        """``ready: <condition> was false (<path> = <value>, ...)``."""
        ...

    def progress(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                 ctx: Mapping[str, Any]) -> str: ...

    def holds(self, condition: str, obj: Mapping[str, Any] | None, ctx: Mapping[str, Any]) -> bool:
        """Whether a condition (expression or kubectl-style shorthand) holds for ``obj``."""
        ...


class DefaultLanguage:
    """smrun's language: ``statemachine.expressions`` + ``statemachine.readiness``."""

    def __init__(self, template_dir: Any = None) -> None:
        self.template_dir = template_dir

    def evaluate(self, expr: str, ctx: Mapping[str, Any]) -> Any:
        return expressions.evaluate(expr, dict(ctx))

    def render_manifests(self, template: str, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
        return render.render_documents(template, dict(ctx), template_dir=self.template_dir)

    def render_value(self, value: Any, ctx: Mapping[str, Any]) -> Any:
        return expressions.render_value(value, dict(ctx))

    def render_patch(self, template: str, ctx: Mapping[str, Any]) -> Any:
        return render.render_patch(template, dict(ctx), template_dir=self.template_dir)

    def readiness(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                  ctx: Mapping[str, Any]) -> tuple[Status, str]:
        verdict = rd.evaluate(obj, readiness.spec, dict(ctx), describe=False)
        return verdict.status, verdict.message

    def explain(self, clause: str, condition: str, obj: Mapping[str, Any] | None,
                ctx: Mapping[str, Any]) -> str:
        return str(rd.explain(_condition(condition), obj, dict(ctx), clause=clause))

    def progress(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                 ctx: Mapping[str, Any]) -> str:
        if not readiness.progress:
            return ""
        return str(expressions.evaluate(readiness.progress, {**ctx, "object": obj}) or "")

    def holds(self, condition: str, obj: Mapping[str, Any] | None, ctx: Mapping[str, Any]) -> bool:
        return bool(expressions.evaluate(_condition(condition).expression, {**ctx, "object": obj}))


@functools.lru_cache(maxsize=512)
def _condition(text: str) -> Condition:
    """Conditions are parsed once: the commit check and ``explain`` run them repeatedly."""
    return parse_condition(text)
