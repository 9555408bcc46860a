"""The engine's one door to the itinerary language: templates, expressions and readiness verdicts.

:class:`Language` binds smrun's sandboxed :mod:`statemachine.expressions`, :mod:`statemachine.render`
and the pure :mod:`statemachine.readiness` to one itinerary's template folder, and takes the
loader's own objects (:class:`~statemachine.itinerary.Condition`,
:class:`~statemachine.itinerary.ReadinessSpec`): nothing is turned back into text and parsed again.
It owns no rule of its own: readiness, the failure dwell and the time-out message live in
``readiness``. Nothing here touches a cluster.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from statemachine import expressions, render
from statemachine import readiness as rd
from statemachine.itinerary import Condition, ReadinessSpec
from statemachine.k8s import Obj

Ctx = Mapping[str, Any]


class Language:
    """Expressions and templates of one itinerary (templates are found in ``template_dir``)."""

    def __init__(self, template_dir: Path) -> None:
        self.template_dir = template_dir

    def evaluate(self, expr: str, ctx: Ctx) -> Any:
        """An expression's value (predicates, forEach, outputs, next.when, wait seconds)."""
        return expressions.evaluate(expr, dict(ctx))

    def items(self, expr: str, ctx: Ctx, *, where: str, state: str | None = None) -> list[Any]:
        """What a ``forEach`` loops over; an undefined value is an error naming the missing field
        (:func:`statemachine.render.for_each_items`, shared with rendering and preflight)."""
        return render.for_each_items(expr, dict(ctx), where=where, state=state)

    def render_manifests(self, template: str, ctx: Ctx) -> list[Obj]:
        """A template file's YAML documents."""
        return render.render_documents(template, dict(ctx), template_dir=self.template_dir)

    def deterministic(self, template: str) -> bool:
        """Whether ``template`` renders the same for an equal context (it may be rendered ahead)."""
        return expressions.deterministic_template(
            template, str(self.template_dir) if self.template_dir else None)

    def render_value(self, value: object, ctx: Ctx) -> Any:
        """Every string inside a YAML value, rendered."""
        return expressions.render_value(value, dict(ctx))

    def render_patch(self, template: str, ctx: Ctx) -> Any:
        """A patch template file's one YAML document."""
        return render.render_patch(template, dict(ctx), template_dir=self.template_dir)

    def verdict(self, obj: Obj | None, spec: ReadinessSpec, ctx: Ctx) -> rd.Verdict:
        """Ready, pending or failed (``failed`` first). A pending verdict is not described: the
        engine judges on every watch event and asks for a description only when it times out."""
        return rd.evaluate(obj, spec, dict(ctx), describe=False)

    def holds(self, condition: Condition, obj: Obj | None, ctx: Ctx) -> bool:
        """Whether a condition (expression or kubectl-style shorthand) holds for ``obj``."""
        return bool(expressions.evaluate(condition.expression, {**ctx, "object": obj},
                                         where=condition.where))

    def progress(self, obj: Obj | None, spec: ReadinessSpec, ctx: Ctx) -> str:
        return rd.progress(obj, spec, ctx)

    def message(self, obj: Obj | None, spec: ReadinessSpec, ctx: Ctx) -> str | None:
        """The readiness ``message`` rendered for ``obj``, or ``None`` when there is none."""
        return rd.author_message(spec, obj, ctx)

    def timeout_message(self, state: str, waited: float, obj: Obj | None, spec: ReadinessSpec,
                        ctx: Ctx) -> str:
        return rd.timeout_message(state, waited, obj, spec, ctx)
