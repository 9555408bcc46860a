"""OpenAPI for the simulated API server: the v3 stub kubectl needs, and admission validation.

1. The stub (``/openapi/v3`` and ``/openapi/v3/<api|apis/group>/<version>``): one path per kind
   whose ``patch`` operation carries ``x-kubernetes-group-version-kind`` and a ``fieldValidation``
   parameter. That is all ``kubectl apply`` needs to switch to server-side field validation; no
   schemas are served.
2. :class:`Validator` (``--openapi DIR``): loads every Swagger 2.0 ``*.json`` in ``DIR`` (the
   KubeVirt and CDI swagger files), finds each kind's definition from its create operation, and
   validates objects written through the API (create, replace, patch of the main resource) with
   ``jsonschema`` Draft 4, resolving ``#/definitions/...``. Strict: unknown fields are errors (a
   VM with ``runing:`` is refused, as a CRD with ``fieldValidation=Strict`` refuses it).
   ``Quantity`` and ``IntOrString`` accept strings and numbers, ``null`` is allowed where upstream
   allows omission, and ``status`` is not validated (controllers own it). Kinds without a
   definition (core kinds) are not validated. The files are read in place, never copied.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from statemachine.errors import DefinitionError, Problem
from statemachine.sim.kinds import Kind, KindRegistry

# ----------------------------------------------------------------------------- the stub


def v3_root(registry: KindRegistry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            key = f"api/{version}" if not group else f"apis/{group}/{version}"
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=sim1"}
    return {"paths": paths}


def v3_group_version(registry: KindRegistry, group: str, version: str) -> dict[str, Any] | None:
    kinds = registry.in_group_version(group, version)
    if not kinds:
        return None
    prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    paths: dict[str, Any] = {}
    for k in kinds:
        item = (f"{prefix}/namespaces/{{namespace}}/{k.plural}/{{name}}" if k.namespaced
                else f"{prefix}/{k.plural}/{{name}}")
        gvk = {"group": group, "version": version, "kind": k.kind}
        params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                  {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                  {"name": "dryRun", "in": "query", "schema": {"type": "string"}}]
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": params,
              "responses": {"200": {"description": "OK"}}}
        paths[item] = {"get": {"x-kubernetes-group-version-kind": gvk,
                               "responses": {"200": {"description": "OK"}}},
                       "put": op, "patch": op}
    return {"openapi": "3.0.0", "info": {"title": "smrun simulator", "version": "v1"},
            "paths": paths, "components": {"schemas": {}}}


# ----------------------------------------------------------------------------- validation

_COLLECTION = re.compile(r"^/apis/([^/]+)/([^/]+)/(?:namespaces/\{[^}]*\}/)?([a-z0-9.-]+)$")
_ANY_SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "integer"}]}


def _loosen(node: Any, strict: bool) -> Any:
    """Allow ``null`` values and (when strict) forbid unknown properties, recursively."""
    if isinstance(node, list):
        return [_loosen(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _loosen(v, strict) for k, v in node.items()}
    if isinstance(out.get("type"), str) and out["type"] != "null":
        out["type"] = [out["type"], "null"]
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class Validator:
    """Validates objects of the kinds the swagger files in a directory define."""

    def __init__(self, directory: str | Path, registry: KindRegistry | None = None) -> None:
        import jsonschema
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        self.directory = Path(directory)
        registry = registry or KindRegistry.default()
        if not self.directory.is_dir():
            raise DefinitionError(f"{self.directory}: OpenAPI directory does not exist",
                                  [Problem(str(self.directory), "", "not a directory")])
        self._validators: dict[tuple[str, str], Any] = {}
        files = sorted(self.directory.glob("*.json"))
        for index, path in enumerate(files):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DefinitionError(f"{path}: not readable JSON: {exc}",
                                      [Problem(str(path), "", f"not readable JSON: {exc}")]) from exc
            if not isinstance(doc, dict) or "definitions" not in doc:
                continue
            definitions = {name: _loosen(d, strict=True) for name, d in doc["definitions"].items()}
            for name in list(definitions):
                if name.endswith("resource.Quantity") or name.endswith("intstr.IntOrString"):
                    definitions[name] = _ANY_SCALAR
                elif name.endswith(".Time") or name.endswith(".MicroTime"):
                    definitions[name] = {"type": ["string", "null"]}
            uri = f"urn:smrun-sim-openapi-{index}"
            resource = Resource.from_contents({"definitions": definitions},
                                              default_specification=DRAFT4)
            reg = Registry().with_resource(uri, resource)
            for route, ops in (doc.get("paths") or {}).items():
                m = _COLLECTION.match(route)
                post = (ops or {}).get("post") if m else None
                if not m or not post:
                    continue
                kind = registry.by_resource(m.group(1), m.group(2), m.group(3))
                ref = next((p.get("schema", {}).get("$ref") for p in post.get("parameters", [])
                            if p.get("in") == "body"), None)
                if kind is None or not ref or not ref.startswith("#/definitions/"):
                    continue
                schema = {"$ref": f"{uri}{ref}"}
                self._validators[(kind.api_version, kind.kind)] = jsonschema.Draft4Validator(
                    schema, registry=reg)

    def knows(self, kind: Kind) -> bool:
        return (kind.api_version, kind.kind) in self._validators

    def problems(self, kind: Kind, obj: dict[str, Any]) -> list[tuple[str, str]]:
        """``(field, message)`` pairs, upstream style (``spec.running``,
        ``Invalid value: ...``); ``[]`` if valid."""
        validator = self._validators.get((kind.api_version, kind.kind))
        if validator is None:
            return []
        body = {k: v for k, v in obj.items() if k != "status"}
        out = []
        for err in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in err.absolute_path) or "<root>"
            out.append((path, f"Invalid value: {err.message}"))
        return out
