#!/usr/bin/env python3
"""Generate ``statemachine/sim/data/crd-schemas.json.gz`` from the upstream KubeVirt and CDI
Swagger 2.0 documents.

Usage: ``python scripts/gen_sim_schemas.py [UPSTREAM_DIR]`` (default ``../shared/upstream``, or
``$SMRUN_UPSTREAM``). Rerun it when the upstream documents change; commit the output.

For every custom kind the simulator serves (``statemachine.sim.kinds.KINDS``, groups ending in
``kubevirt.io``) it finds the kind's definition (from the collection's ``post`` body, else by the
``<version>.<Kind>`` definition name) and writes a *structural* schema, as a CRD's
``openAPIV3Schema`` would hold it:

- every ``$ref`` is inlined (a recursive reference becomes an object that preserves unknown
  fields);
- ``resource.Quantity`` and ``intstr.IntOrString`` become ``x-kubernetes-int-or-string`` (a
  quantity also gets the quantity pattern); ``meta.v1.Time`` a ``date-time`` string;
  ``runtime.RawExtension`` and a nested ``ObjectMeta`` preserve unknown fields; the top-level
  ``metadata`` is ``{type: object}`` (the API server validates metadata itself, as for CRDs);
- the zero-value ``default`` entries openapi-gen emits (``""``, ``0``, ``false``, ``{}``) are
  dropped: they describe Go zero values, not CRD defaults;
- descriptions are kept (``kubectl explain`` shows them).

It also writes the ``ObjectMeta`` schema and a few core types the KubeVirt document defines in
full (``core``: ``PersistentVolumeClaimSpec``, ...), for the core kinds' OpenAPI schemas. The
upstream documents are read in place and never copied; only this derived data is shipped, with
its attribution in ``statemachine/sim/data/NOTICE.md``.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from statemachine.sim.kinds import KINDS, Kind  # noqa: E402

OUT = ROOT / "statemachine" / "sim" / "data" / "crd-schemas.json.gz"
SOURCES = ("kubevirt-swagger.json", "cdi-swagger.json")
QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
KEEP = ("type", "format", "description", "enum", "nullable", "required", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
        "pattern", "minProperties", "maxProperties", "uniqueItems",
        "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type")
# Core types the KubeVirt document carries in full; used for the core kinds' OpenAPI schemas.
CORE_DEFINITIONS = ("k8s.io.api.core.v1.PersistentVolumeClaimSpec",
                    "k8s.io.api.core.v1.Toleration", "k8s.io.api.core.v1.Affinity",
                    "k8s.io.api.core.v1.LocalObjectReference")
_COLLECTION = re.compile(r"^/apis/([^/]+)/([^/]+)/(?:namespaces/\{[^}]*\}/)?([a-z0-9.-]+)$")


class Converter:
    """Turns one Swagger document's definitions into inlined structural schemas."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions

    def special(self, name: str, description: str) -> dict[str, Any] | None:
        base = {"description": description} if description else {}
        if name.endswith("resource.Quantity"):
            return {**base, "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "pattern": QUANTITY_PATTERN, "x-kubernetes-int-or-string": True}
        if name.endswith("intstr.IntOrString"):
            return {**base, "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True}
        if name.endswith(".Time") or name.endswith(".MicroTime"):
            return {**base, "type": "string", "format": "date-time"}
        if name.endswith("runtime.RawExtension") or name.endswith(".ObjectMeta"):
            return {**base, "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return None

    def convert(self, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.split("/")[-1]
            target = self.definitions[name]
            description = node.get("description") or target.get("description", "")
            special = self.special(name, description)
            if special is not None:
                return special
            if name in stack:  # recursive type: stop here, keep whatever is sent
                return {"description": description, "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True}
            out = self.convert(target, (*stack, name))
            if node.get("description"):
                out["description"] = node["description"]
            return out
        out: dict[str, Any] = {k: node[k] for k in KEEP if k in node}
        if isinstance(out.get("type"), list):  # e.g. Quantity spelled as a type list
            out.pop("type")
            return {**out, "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True}
        if "properties" in node:
            out["properties"] = {k: self.convert(v, stack) for k, v in node["properties"].items()}
            out.setdefault("type", "object")
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self.convert(node["additionalProperties"], stack)
            out.setdefault("type", "object")
        if isinstance(node.get("items"), dict):
            out["items"] = self.convert(node["items"], stack)
            out.setdefault("type", "array")
        if "type" not in out and "anyOf" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if out.get("format") == "int-or-string":
            out.pop("format")
            out.pop("type", None)
            out.update({"anyOf": [{"type": "integer"}, {"type": "string"}],
                        "x-kubernetes-int-or-string": True})
        return out

    def kind_schema(self, name: str) -> dict[str, Any]:
        schema = self.convert(self.definitions[name], (name,))
        props = schema.setdefault("properties", {})
        props["metadata"] = {"type": "object"}
        return schema


def _definition_for(kind: Kind, doc: dict[str, Any]) -> str | None:
    for route, ops in (doc.get("paths") or {}).items():
        m = _COLLECTION.match(route)
        post = (ops or {}).get("post") if m else None
        if not m or not post or (m.group(1), m.group(2), m.group(3)) != (
                kind.group, kind.version, kind.plural):
            continue
        for param in post.get("parameters", []):
            ref = (param.get("schema") or {}).get("$ref", "") if param.get("in") == "body" else ""
            if ref.startswith("#/definitions/"):
                return str(ref.split("/")[-1])
    by_name = f"{kind.version}.{kind.kind}"
    return by_name if by_name in doc.get("definitions", {}) else None


def generate(upstream: Path) -> dict[str, Any]:
    docs = {name: json.loads((upstream / name).read_text(encoding="utf-8")) for name in SOURCES}
    kinds: dict[str, Any] = {}
    object_meta: dict[str, Any] | None = None
    for kind in KINDS:
        if not kind.group.endswith("kubevirt.io"):
            continue
        for source, doc in docs.items():
            definition = _definition_for(kind, doc)
            if definition is not None:
                conv = Converter(doc["definitions"])
                kinds[f"{kind.api_version}/{kind.kind}"] = conv.kind_schema(definition)
                break
        else:
            print(f"warning: no upstream definition for {kind.api_version} {kind.kind}",
                  file=sys.stderr)
    kv = docs["kubevirt-swagger.json"]["definitions"]
    conv = Converter(kv)
    meta_name = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    object_meta = conv.convert({k: v for k, v in kv[meta_name].items()}, (meta_name,))
    core = {name.rsplit(".", 1)[-1]: conv.convert({"$ref": f"#/definitions/{name}"}, ())
            for name in CORE_DEFINITIONS}
    return {"generatedBy": "scripts/gen_sim_schemas.py", "core": core,
            "sources": {name: docs[name].get("info", {}) for name in SOURCES},
            "licence": "Apache-2.0; derived from the KubeVirt and CDI OpenAPI documents "
                       "(see NOTICE.md beside this file)",
            "objectMeta": object_meta, "kinds": kinds}


def main(argv: list[str]) -> int:
    default = os.environ.get("SMRUN_UPSTREAM") or str(ROOT.parent / "shared" / "upstream")
    upstream = Path(argv[1] if len(argv) > 1 else default)
    if not all((upstream / name).is_file() for name in SOURCES):
        print(f"{upstream}: needs {', '.join(SOURCES)}", file=sys.stderr)
        return 2
    data = generate(upstream)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same input gives the same bytes, so a rerun shows no diff.
    OUT.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(f"{OUT.relative_to(ROOT)}: {len(data['kinds'])} kinds, {len(raw)} bytes "
          f"({OUT.stat().st_size} gzipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
