"""The Plan CRD and `smrun operator manifests` (issue 12, items 1 and 8).

The CRD's schema is generated from schemas/plan.schema.json: a walk over both fails on any
disagreement (a field, a requirement, an enum, a type), another walk checks it is structural, and
kubectl applies the printed install to a simulated cluster and lists Plans with their columns.
The ClusterRole's derivation is tested in test_cluster_role.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.operator import crd
from statemachine.schema import load_schema

REPO = Path(__file__).resolve().parents[2]
SMRUN = [sys.executable, "-m", "statemachine"]


def _printed(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run([*SMRUN, "operator", "manifests", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {**defs[node["$ref"].removeprefix("#/$defs/")],
                **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _agree(source: dict[str, Any], generated: dict[str, Any], defs: dict[str, Any],
           path: str) -> list[str]:
    """Every disagreement between a plan-schema node and the CRD node generated for it."""
    source = _resolve(source, defs)
    out: list[str] = []
    if "oneOf" in source:
        types = {b.get("type") for b in source["oneOf"]}
        if types == {"integer", "string"} and generated.get("x-kubernetes-int-or-string"):
            return []
        return [f"{path}: oneOf {types} became {generated}"]
    want = source.get("type") or ("string" if all(isinstance(v, str) for v in
                                                  source.get("enum", [source.get("const")]))
                                  else None)
    if want != generated.get("type"):
        out.append(f"{path}: type {want!r} != {generated.get('type')!r}")
    enum = source.get("enum") or ([source["const"]] if "const" in source else None)
    if enum != generated.get("enum"):
        out.append(f"{path}: enum {enum} != {generated.get('enum')}")
    if sorted(source.get("required", [])) != sorted(generated.get("required", [])):
        out.append(f"{path}: required {source.get('required')} != {generated.get('required')}")
    for key in ("minLength", "maxLength", "minimum", "maximum", "minItems"):
        if key == "minimum" and "exclusiveMinimum" in source:
            continue  # checked below
        if source.get(key) != generated.get(key):
            out.append(f"{path}: {key} {source.get(key)} != {generated.get(key)}")
    if "exclusiveMinimum" in source and not (generated.get("exclusiveMinimum") is True and
                                            generated.get("minimum") == source["exclusiveMinimum"]):
        out.append(f"{path}: exclusiveMinimum not carried over")
    if source.get("type") == "object" and "properties" not in source \
            and not isinstance(source.get("additionalProperties"), dict) \
            and generated.get("x-kubernetes-preserve-unknown-fields") is not True:
        out.append(f"{path}: a free-form object must keep unknown fields")
    props, gen_props = source.get("properties", {}), generated.get("properties", {})
    if set(props) != set(gen_props):
        out.append(f"{path}: fields {sorted(props)} != {sorted(gen_props)}")
    for name in set(props) & set(gen_props):
        out += _agree(props[name], gen_props[name], defs, f"{path}.{name}")
    if "items" in source:
        out += _agree(source["items"], generated.get("items", {}), defs, f"{path}[]")
    if isinstance(source.get("additionalProperties"), dict):
        out += _agree(source["additionalProperties"], generated.get("additionalProperties", {}),
                      defs, f"{path}{{}}")
    return out


def test_crd_spec_schema_agrees_with_plan_schema() -> None:
    plan = load_schema("plan")
    generated = crd.plan_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = generated["properties"]["spec"]
    assert {k: spec["properties"][k] for k in crd.OPERATOR_FIELDS} == crd.OPERATOR_FIELDS
    props = {k: v for k, v in spec["properties"].items() if k not in crd.OPERATOR_FIELDS}
    for side in ("source", "target"):
        extra = {k: props[side]["properties"][k] for k in crd.CLUSTER_FIELDS}
        assert extra == crd.CLUSTER_FIELDS
        props[side] = {**props[side], "properties": {
            k: v for k, v in props[side]["properties"].items() if k not in crd.CLUSTER_FIELDS}}
    only_plan = {**spec, "properties": props}
    assert _agree(plan["properties"]["spec"], only_plan, plan["$defs"], "spec") == []


def test_plan_schema_change_shows_in_crd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated, not copied: a field added to the plan schema is in the CRD, and a construct the
    translation cannot make structural is refused rather than passed through."""
    plan = json.loads(json.dumps(load_schema("plan")))
    plan["properties"]["spec"]["properties"]["newField"] = {"type": "integer", "minimum": 3}
    monkeypatch.setattr(crd, "load_schema", lambda name: plan)
    assert crd.spec_schema()["properties"]["newField"] == {"type": "integer", "minimum": 3}
    assert set(crd.spec_schema()["properties"]) == \
        set(plan["properties"]["spec"]["properties"]) | set(crd.OPERATOR_FIELDS)
    plan["properties"]["spec"]["properties"]["odd"] = {"oneOf": [{"type": "boolean"},
                                                                 {"type": "string"}]}
    with pytest.raises(ValueError, match="oneOf/anyOf"):
        crd.spec_schema()


_ALLOWED = {"type", "properties", "items", "required", "enum", "minLength", "maxLength",
            "minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems", "minProperties",
            "maxProperties", "description", "format", "pattern", "additionalProperties",
            "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}


def _structural_problems(node: dict[str, Any], path: str) -> list[str]:
    out = [f"{path}: keyword {k}" for k in node if k not in _ALLOWED]
    if "type" not in node and not node.get("x-kubernetes-int-or-string") \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.append(f"{path}: no type")
    if node.get("additionalProperties") is False:
        out.append(f"{path}: additionalProperties false")
    if "pattern" in node and "(?" in node["pattern"]:
        out.append(f"{path}: pattern RE2 cannot run")
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        out.append(f"{path}: exclusiveMinimum must be a boolean in OpenAPI 3.0")
    for name, child in node.get("properties", {}).items():
        out += _structural_problems(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _structural_problems(node["additionalProperties"], f"{path}{{}}")
    return out


def test_crd_schema_is_structural() -> None:
    version = crd.plan_crd()["spec"]["versions"][0]
    assert _structural_problems(version["schema"]["openAPIV3Schema"], "") == []
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == \
        ["Type", "Phase", "Completed/Total", "Failed", "Age"]


def test_manifests_print_the_install() -> None:
    docs = _printed("--namespace", "migrations", "--image", "registry.example/smrun:1.2")
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) >= {"CustomResourceDefinition", "ServiceAccount", "ClusterRole",
                            "ClusterRoleBinding", "Deployment", "PodDisruptionBudget"}
    assert by_kind["CustomResourceDefinition"] == crd.plan_crd()
    deploy = by_kind["Deployment"]
    assert deploy["metadata"]["namespace"] == "migrations"
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/smrun:1.2"
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert by_kind["ClusterRoleBinding"]["subjects"][0]["namespace"] == "migrations"
    rules = by_kind["ClusterRole"]["rules"]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


def test_crd_applies_and_kubectl_lists_plans(kubectl: Callable[..., Any], tmp_path: Path) -> None:
    docs = [d for d in _printed() if d["kind"] not in ("Deployment", "PodDisruptionBudget")]
    install = tmp_path / "install.yaml"
    install.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    kubectl("apply", "-f", str(install))
    kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
    plan = yaml.safe_load((REPO / "examples" / "live" / "plan.yaml").read_text())
    plan["metadata"] = {"name": "live-demo", "namespace": "default"}
    del plan["spec"]["simulation"]
    plan["spec"]["source"] = {"context": "source"}
    plan["spec"]["target"] = {"context": "target"}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    kubectl("apply", "-f", str(tmp_path / "plan.yaml"))
    kubectl("patch", "plan", "live-demo", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"phase": "Running", "progress": "1/3", "failed": 0}}))
    out = kubectl("get", "plans").stdout.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "PHASE", "COMPLETED/TOTAL", "FAILED", "AGE"]
    assert out[1].split()[:5] == ["live-demo", "live", "Running", "1/3", "0"]
    # A typo is refused by the API server (strict field validation), as the CLI refuses it.
    plan["spec"]["settings"]["maxInFlite"] = 2
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    bad = kubectl("apply", "-f", str(tmp_path / "typo.yaml"), check=False)
    assert bad.returncode != 0 and "maxInFlite" in bad.stderr
    # A value the schema refuses is refused by the API server too.
    plan["spec"]["settings"] = {"maxInFlight": 0}
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    bad = kubectl("apply", "-f", str(tmp_path / "zero.yaml"), check=False)
    assert bad.returncode != 0 and "maxInFlight" in bad.stderr
