"""Cross-check against Forklift's own Plan CRD (test data only, never shipped or copied).

``$SMRUN_UPSTREAM/forklift-plan-crd.yaml`` (default ../shared/upstream beside the repository) is
Forklift's ``plans.forklift.konveyor.io`` CRD. These tests check that the importer's hand-written
Plan shape (statemachine/forklift/shape.py) has the same fields, types, enums and required
fields, and that every Plan written for the tests is one Forklift's API server would accept. When
the file is absent they are skipped; no other test needs it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from statemachine.forklift.shape import PLAN_SPEC, VM, Arr, Enum, Obj, Shape
from tests.forklift.conftest import DATA, REPO

CRD_FILE = "forklift-plan-crd.yaml"


@pytest.fixture(scope="module")
def plan_schema() -> dict[str, Any]:
    configured = os.environ.get("SMRUN_UPSTREAM")
    path = Path(configured or REPO.parent / "shared" / "upstream") / CRD_FILE
    if not path.is_file():
        pytest.skip(f"Forklift's Plan CRD not found at {path} (set SMRUN_UPSTREAM)")
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _compare(shape: Shape, crd: dict[str, Any], where: str) -> list[str]:
    problems = []
    if shape.json_type != crd.get("type"):
        problems.append(f"{where}: shape type {shape.json_type}, CRD type {crd.get('type')}")
    if isinstance(shape, Enum) and list(shape.values) != crd.get("enum"):
        problems.append(f"{where}: shape enum {shape.values}, CRD enum {crd.get('enum')}")
    if isinstance(shape, Obj) and "properties" in crd:
        for key, sub in shape.fields.items():
            if key not in crd["properties"]:
                problems.append(f"{where}.{key}: not in the CRD")
            else:
                problems += _compare(sub, crd["properties"][key], f"{where}.{key}")
        # The shape may require more than the CRD (a reference the importer follows needs its
        # name), never less.
        if not set(crd.get("required", ())) <= set(shape.required):
            problems.append(f"{where}: shape requires {sorted(shape.required)}, "
                            f"CRD {sorted(crd.get('required', ()))}")
    if isinstance(shape, Arr):
        problems += _compare(shape.items, crd["items"], f"{where}[]")
    return problems


def test_plan_shape_has_the_crd_types_enums_and_required_fields(plan_schema: dict[str, Any]) -> None:
    spec = plan_schema["properties"]["spec"]
    assert _compare(PLAN_SPEC, spec, "spec") == []
    # Every field of the CRD is known to the importer: none is reported as "not a Forklift field".
    assert sorted(set(spec["properties"]) - set(PLAN_SPEC.fields)) == []
    vm = spec["properties"]["vms"]["items"]
    assert sorted(set(vm["properties"]) - set(VM.fields)) == []


def _plans() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DATA.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for obj in (doc.get("items") or []) if doc and doc.get("kind") == "List" else [doc]:
                if obj and obj.get("kind") == "Plan":
                    found.append((path.name, obj))
    return found


def test_every_test_plan_is_valid_for_forklift(plan_schema: dict[str, Any]) -> None:
    plans = _plans()
    assert len(plans) >= 8
    validator = Draft7Validator(plan_schema)
    for file, plan in plans:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(plan)]
        assert errors == [], f"{file}: Plan {plan['metadata']['name']}"
