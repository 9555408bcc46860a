"""The ``plans.smrun.io`` CustomResourceDefinition, generated from schemas/plan.schema.json.

One source of truth: the plan file's JSON Schema (draft 2020-12) is translated into a structural
OpenAPI v3 schema for ``spec``, so a field added to plans appears in the CRD without a second edit
(tests/operator/test_crd.py fails if the two disagree). The translation:

- ``$ref`` is resolved (a structural schema has no references); ``$schema``/``$id``/``$defs`` and
  ``title`` (our message wording) are dropped;
- ``const`` becomes a one-value ``enum``; an ``enum`` gets the ``type`` of its values (a
  structural schema types every node);
- a ``oneOf`` of an integer and a string (durations) becomes ``x-kubernetes-int-or-string``;
- a numeric ``exclusiveMinimum`` becomes ``minimum`` + ``exclusiveMinimum: true`` (OpenAPI 3.0);
- a free-form object (no ``properties``) keeps what is sent (``x-kubernetes-preserve-unknown-fields``);
  ``propertyNames`` (a name pattern) is left to the operator;
- ``additionalProperties: false`` is dropped: the API server prunes unknown fields, and kubectl's
  strict field validation refuses them on apply;
- a ``pattern`` that the API server's regular expressions (RE2) cannot run (look-ahead) is
  dropped, like the per-branch checks of a duration.

The CRD adds ``OPERATOR_FIELDS`` (``spec.cancel``) and ``CLUSTER_FIELDS``
(``spec.source|target.kubeconfigSecret``) to the plan's spec: requests to the operator
that a plan file has no use for. What the CRD cannot express is still checked: the operator validates every Plan object against
the full plan schema and the loader's semantic checks before anything runs (phase ``Invalid``).
A construct the translation does not know raises ``ValueError`` (a defect of the build, caught by
the tests, never of a user's input). This module builds data only; it talks to no cluster.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from statemachine.schema import load_schema

GROUP = "smrun.io"
VERSION = "v1alpha1"
KIND = "Plan"
PLURAL = "plans"
NAME = f"{PLURAL}.{GROUP}"

# Python regular expressions the API server's RE2 does not run.
_NOT_RE2 = re.compile(r"\(\?[=!<]")
_DROP = frozenset({"$schema", "$id", "$defs", "title"})

PRINTER_COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Completed/Total", "type": "string", "jsonPath": ".status.progress",
     "description": "VMs completed of the VMs in the plan"},
    {"name": "Failed", "type": "integer", "jsonPath": ".status.failed"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)

# The fields a Plan object has beyond a plan file's spec: requests to the operator about the
# object, meaningless in a file (planobject.py strips them before validation).
OPERATOR_FIELDS: dict[str, dict[str, Any]] = {
    "cancel": {"type": "boolean",
               "description": "operator: cancel the run (undo for the VMs not yet handed over)"},
}

# ... and beyond a plan file's spec.source / spec.target: the kubeconfig from a Secret in the
# Plan's namespace (credentials.py reads it and hands the plan a kubeconfig file).
CLUSTER_FIELDS: dict[str, dict[str, Any]] = {
    "kubeconfigSecret": {
        "type": "object", "required": ["name"],
        "description": "operator: a Secret in the Plan's namespace holding a kubeconfig",
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "the Secret's name"},
            "key": {"type": "string", "minLength": 1,
                    "description": "the key holding the kubeconfig (default kubeconfig)"},
            "context": {"type": "string", "minLength": 1,
                        "description": "the kubeconfig context (default its current one)"}}},
}

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Canceled", "Invalid", "Refused")


def _status_schema() -> dict[str, Any]:
    text = {"type": "string"}
    count = {"type": "integer", "format": "int64"}
    vm = {"type": "object", "properties": {
        "vm": text, "phase": text, "state": text, "step": text, "waitingFor": text,
        "progress": text, "message": text, "run": text,
        "outputs": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    condition = {"type": "object", "required": ["type", "status"], "properties": {
        "type": text, "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": text, "message": text, "observedGeneration": count,
        "lastTransitionTime": {"type": "string", "format": "date-time"}}}
    return {"type": "object", "properties": {
        "phase": {"type": "string", "enum": list(PHASES)},
        "message": text, "observedGeneration": count, "operator": text, "run": text,
        "progress": text, "total": count, "completed": count, "failed": count, "canceled": count,
        "vms": {"type": "array", "items": vm},
        "conditions": {"type": "array", "items": condition,
                       "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}}}


def _type_of(values: list[Any]) -> str:
    kinds = {"string" if isinstance(v, str) else "boolean" if isinstance(v, bool)
             else "integer" if isinstance(v, int) else "number" if isinstance(v, float)
             else "?" for v in values}
    if len(kinds) != 1 or "?" in kinds:
        raise ValueError(f"enum of mixed or unsupported values: {values!r}")
    return kinds.pop()


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 form of one JSON Schema node (``defs``: the ``$defs``)."""
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        if name not in defs:
            raise ValueError(f"unresolvable $ref {node['$ref']!r}")
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs)
    out: dict[str, Any] = {}
    branches = node.get("oneOf") or node.get("anyOf")
    if branches is not None:
        types = {b.get("type") for b in branches}
        if types != {"integer", "string"}:
            raise ValueError(f"oneOf/anyOf of types {sorted(map(str, types))}")
        out["x-kubernetes-int-or-string"] = True
        if "description" in node:
            out["description"] = node["description"]
        return out
    for key, value in node.items():
        if key in _DROP or key in ("additionalProperties", "oneOf", "anyOf", "propertyNames"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {k: structural(v, defs) for k, v in value.items()}
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "pattern":
            if not _NOT_RE2.search(value):
                out["pattern"] = value
        elif key in ("type", "enum", "required", "minLength", "maxLength", "minimum", "maximum",
                     "minItems", "maxItems", "minProperties", "maxProperties", "description",
                     "format", "default"):
            out[key] = copy.deepcopy(value)
        else:
            raise ValueError(f"unsupported keyword {key!r}")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = structural(extra, defs)
    elif out.get("type") == "object" and "properties" not in out and extra is not False:
        # A free-form object (spec.parameters: any value per name): kept as sent, not pruned.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = _type_of(out["enum"])
    if "type" not in out:
        raise ValueError(f"a node without a type: {sorted(node)}")
    return out


def spec_schema() -> dict[str, Any]:
    """The CRD's schema of ``spec``, from the plan schema's ``spec``."""
    plan = load_schema("plan")
    spec = structural(plan["properties"]["spec"], plan.get("$defs", {}))
    spec["properties"].update(copy.deepcopy(OPERATOR_FIELDS))
    for side in ("source", "target"):
        spec["properties"][side]["properties"].update(copy.deepcopy(CLUSTER_FIELDS))
    return spec


def plan_crd() -> dict[str, Any]:
    """The ``plans.smrun.io`` CustomResourceDefinition (one version, status subresource)."""
    plan = load_schema("plan")
    schema = {"type": "object", "description": plan.get("description", ""),
              "required": ["spec"],
              "properties": {"spec": spec_schema(), "status": _status_schema()}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": "smrun"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "plan", "kind": KIND, "listKind": "PlanList",
                      "shortNames": ["smplan"], "categories": ["smrun"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
            }],
        },
    }
