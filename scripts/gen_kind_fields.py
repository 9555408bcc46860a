#!/usr/bin/env python3
"""Generate ``statemachine/sim/data/kind-fields.json``: the field names of the kinds an itinerary
reads, for the static check of field paths (``statemachine/fieldpaths.py``).

Usage: ``python scripts/gen_kind_fields.py``. Rerun it after ``scripts/gen_sim_schemas.py`` or a
change to ``statemachine/sim/coreschemas.py``; commit the output (a test compares it).

It reads the simulator's schema data (``crd-schemas.json.gz``, derived from the upstream KubeVirt
and CDI OpenAPI documents) and keeps only what the check needs: per ``<apiVersion>/<Kind>``, a
tree whose node is

- ``{"p": {NAME: NODE, ...}}``: an object whose fields are all listed (closed): a name that is
  not there is a mistake;
- ``{"i": NODE}``: a list, ``NODE`` its items;
- ``0``: nothing to check below: a scalar, a map with free keys (``additionalProperties``:
  labels, annotations, resource lists), an object that keeps unknown fields
  (``x-kubernetes-preserve-unknown-fields``), an int-or-string, an object without properties.

The top-level ``metadata`` is the full ``ObjectMeta`` (closed; its ``labels`` and
``annotations`` are maps). Of the built-in Kubernetes kinds, only those whose simulator schema
lists every field are included (ConfigMap, Secret, ServiceAccount, Namespace, and
PersistentVolumeClaim with its ``status`` left open: the simulator writes a subset of it); the
others are not checked. The whole file is ~90 kB and parses in ~2 ms, where the full schema data
takes ~35 ms to load: the check runs on every ``smrun validate`` and ``smrun run``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from statemachine.sim import coreschemas, schemas  # noqa: E402

OUT = ROOT / "statemachine" / "sim" / "data" / "kind-fields.json"
OPEN = "x-kubernetes-preserve-unknown-fields"
# Built-in kinds whose simulator schema lists every field, and the parts of them left open.
CORE = {("", "v1", "ConfigMap"): (), ("", "v1", "Secret"): (), ("", "v1", "ServiceAccount"): (),
        ("", "v1", "Namespace"): (), ("", "v1", "PersistentVolumeClaim"): ("status",)}


def compact(node: Any) -> Any:
    """The check's tree of one schema node (see the module docstring)."""
    if not isinstance(node, dict) or node.get(OPEN) or node.get("x-kubernetes-int-or-string"):
        return 0
    if node.get("type") == "array" or "items" in node:
        return {"i": compact(node.get("items"))}
    if node.get("additionalProperties") or not isinstance(node.get("properties"), dict):
        return 0
    return {"p": {name: compact(sub) for name, sub in sorted(node["properties"].items())}}


def generate() -> dict[str, Any]:
    meta = compact(schemas.object_meta())
    kinds: dict[str, Any] = {}
    for key, schema in schemas.data()["kinds"].items():
        tree = compact(schema)
        tree["p"]["metadata"] = meta
        kinds[key] = tree
    for (group, version, kind), schema in coreschemas.core_schemas().items():
        if (group, version, kind) not in CORE:
            continue
        tree = compact(schema)
        tree["p"]["metadata"] = meta
        for name in CORE[(group, version, kind)]:
            tree["p"][name] = 0
        kinds[f"{group}/{version}/{kind}" if group else f"{version}/{kind}"] = tree
    return {"generatedBy": "scripts/gen_kind_fields.py", "kinds": dict(sorted(kinds.items()))}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n"


def main() -> int:
    OUT.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
