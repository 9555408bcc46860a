"""The engine's seam to the itinerary language: templates, expressions and readiness verdicts.

:class:`Language` is what the engine calls; :class:`DefaultLanguage` implements it with smrun's
own sandboxed ``statemachine.expressions`` and pure ``statemachine.readiness`` modules (imported
lazily). Tests may inject a smaller implementation. Nothing here touches a cluster.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from statemachine.engine.flow import ReadinessT

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

    def readiness(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                  ctx: Mapping[str, Any]) -> tuple[Status, str]:
        """``failed`` checked before ``ready``; returns (status, message)."""
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
        from statemachine import expressions
        return expressions.evaluate(expr, dict(ctx))

    def render_manifests(self, template: str, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
        from statemachine import render
        return render.render_documents(template, dict(ctx), template_dir=self.template_dir)

    def render_value(self, value: Any, ctx: Mapping[str, Any]) -> Any:
        from statemachine import expressions
        return expressions.render_value(value, dict(ctx))

    def readiness(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                  ctx: Mapping[str, Any]) -> tuple[Status, str]:
        try:
            from statemachine import readiness as rd
        except ImportError:  # pragma: no cover - the language module not installed yet
            return self._readiness(obj, readiness.spec, ctx)
        verdict = rd.evaluate(obj, readiness.spec, dict(ctx))
        return verdict.status, verdict.message

    def _readiness(self, obj: Mapping[str, Any] | None, spec: Any,
                   ctx: Mapping[str, Any]) -> tuple[Status, str]:
        from statemachine import expressions
        full = {**ctx, "object": obj}
        if spec.failed is not None and expressions.evaluate(spec.failed.expression, full):
            return "failed", f"failed: {spec.failed.source} holds"
        if spec.ready is None or expressions.evaluate(spec.ready.expression, full):
            return "ready", "ready"
        return "pending", f"ready: {spec.ready.source} was false"

    def explain(self, clause: str, condition: str, obj: Mapping[str, Any] | None,
                ctx: Mapping[str, Any]) -> str:
        from statemachine.itinerary import parse_condition
        try:
            from statemachine import readiness as rd
        except ImportError:  # pragma: no cover
            return f"{clause}: {condition} was false"
        return str(rd.explain(parse_condition(condition), obj, dict(ctx), clause=clause))

    def progress(self, obj: Mapping[str, Any] | None, readiness: ReadinessT,
                 ctx: Mapping[str, Any]) -> str:
        from statemachine import expressions
        if not readiness.progress:
            return ""
        return str(expressions.evaluate(readiness.progress, {**ctx, "object": obj}) or "")

    def holds(self, condition: str, obj: Mapping[str, Any] | None, ctx: Mapping[str, Any]) -> bool:
        from statemachine import expressions
        from statemachine.itinerary import parse_condition
        return bool(expressions.evaluate(parse_condition(condition).expression, {**ctx, "object": obj}))
