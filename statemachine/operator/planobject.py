"""A Plan object of the cluster (``smrun.io/v1alpha1`` Plan) as the :class:`Plan` a file loads to.

The object's ``spec`` goes through exactly the checks of ``smrun validate`` (schema, then the
loader's semantic checks), so a Plan object and a plan file with the same spec are accepted or
refused alike, with the same messages. Only the location differs: a message names ``Plan
NAMESPACE/NAME`` instead of ``file:line`` (the object has no lines). Of the object's metadata only
the name is the plan's, and of the spec every field but the operator's own (``spec.cancel``) (labels, annotations and server fields are the cluster's business).
Paths in the spec (kubeconfig, itinerary file, hook playbooks, simulation seed) are read on the
operator's file system, relative ones from its working directory.

It talks to no cluster.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from statemachine.operator.crd import OPERATOR_FIELDS
from statemachine.plan import Plan, load_plan_document
from statemachine.yamlsource import SourceDoc


def where(obj: Mapping[str, Any]) -> str:
    """``Plan NAMESPACE/NAME``: how messages name a Plan object."""
    meta = obj.get("metadata") or {}
    return f"Plan {meta.get('namespace', '')}/{meta.get('name', '')}"


def plan_document(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The plan-file document of a Plan object."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        spec = {k: v for k, v in spec.items() if k not in OPERATOR_FIELDS}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {"name": meta.get("name")}, "spec": spec}


def cancel_requested(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("spec") or {}).get("cancel"))


def load_plan_object(obj: Mapping[str, Any], *, base: Path | None = None) -> Plan:
    """Validate and resolve a Plan object; raises ``SchemaError`` (the CLI's exit-2 messages)."""
    label = where(obj)
    doc = SourceDoc(plan_document(obj), label)
    return load_plan_document(doc, Path(label), base=base or Path.cwd())
