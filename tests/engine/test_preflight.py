"""Preflight over fake clusters with the real plan/itinerary loaders and renderer."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from statemachine.engine.preflight import run_checks
from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan

from .fakes import FakeCluster

DATA = Path(__file__).resolve().parent.parent / "data" / "engine"


def _clusters(**kw: object) -> dict[str, FakeCluster]:
    source, target = FakeCluster("source"), FakeCluster("target", **kw)  # type: ignore[arg-type]
    for name, data in {"good": {"ok": "yes", "size": "1"}, "notok": {"ok": "no", "size": "1"},
                       "bigger": {"ok": "yes", "size": "2"}}.items():
        source.create({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"{name}-src", "namespace": "shop"}, "data": data})
    return {"source": source, "target": target}


def test_every_finding_for_every_vm_is_listed_at_once() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    findings = run_checks(plan, load_itinerary(plan.itinerary), _clusters())  # type: ignore[arg-type]
    assert "shop/notok: SourceReady: source is not ready (ok = no)" in findings.problems
    assert any(p.startswith("shop/missing:") and "not found" in p for p in findings.problems)
    assert findings.warnings == ["shop/bigger: SizeMatches: size differs (2)"]
    assert not any(p.startswith("shop/good") for p in findings.problems)


def test_block_if_turns_a_warning_into_a_blocking_problem() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    settings = dataclasses.replace(plan.settings, require_matching_instance_types=True)
    plan = dataclasses.replace(plan, settings=settings)
    findings = run_checks(plan, load_itinerary(plan.itinerary), _clusters())  # type: ignore[arg-type]
    assert "shop/bigger: SizeMatches: size differs (2)" in findings.problems and not findings.warnings


def test_missing_permissions_are_listed_with_the_role_rules_that_close_them() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    clusters = _clusters(forbidden={("create", "ConfigMap"), ("watch", "ConfigMap")})
    good = [v for v in plan.vms if v.name == "good"]
    findings = run_checks(plan, load_itinerary(plan.itinerary), clusters, vms=good)  # type: ignore[arg-type]
    assert findings.problems == ["target: missing permission: create v1 ConfigMap in namespace shop",
                                 "target: missing permission: watch v1 ConfigMap in namespace shop"]
    rules = "\n".join(findings.rules)
    assert 'resources: ["configmaps"]' in rules and 'verbs: ["create", "watch"]' in rules
