"""OpenAPI documents of the simulated API server: ``/openapi/v2`` and ``/openapi/v3``.

Built from the same schemas the server admits with (``admission.schema_of``: a CRD's schema or
the shipped upstream KubeVirt/CDI data) plus the compact core schemas of ``coreschemas.py``, for
every kind the cluster serves right now (CRDs included), so ``kubectl explain`` works:

- ``/openapi/v3``: the discovery document, one ``serverRelativeURL`` per group-version with
  ``?hash=`` (uppercase hex SHA-512 of that document);
- ``/openapi/v3/api/v1``, ``/openapi/v3/apis/<group>/<version>``: OpenAPI 3.0 with, per kind, a
  path whose ``put``/``patch`` carry ``x-kubernetes-group-version-kind`` and the
  ``fieldValidation`` parameter (kubectl then validates on the server) and a
  ``components.schemas`` entry (``io.kubevirt.v1.VirtualMachine``, ``io.k8s.api.core.v1.ConfigMap``)
  with ``x-kubernetes-group-version-kind`` and ``metadata`` referencing ``ObjectMeta``. With
  the matching ``hash`` the answer is ``Cache-Control: public, immutable``;
- ``/openapi/v2``: one Swagger 2.0 document with every kind under ``definitions`` (CRD schemas
  stripped of what Swagger 2.0 cannot say: ``anyOf``, ``nullable``), with an ``ETag``
  (``If-None-Match`` gets 304). JSON only: a client that accepts only protobuf gets 406.

Documents are built once per registry state (a CRD change makes new ones) and sent as bytes.
"""
from __future__ import annotations

import hashlib
import json
import threading
import weakref
from typing import Any

from statemachine.sim import admission, coreschemas, schemas
from statemachine.sim.kinds import Kind, KindRegistry

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CORE_PREFIX = {"": "io.k8s.api.core", "batch": "io.k8s.api.batch",
                "rbac.authorization.k8s.io": "io.k8s.api.rbac",
                "storage.k8s.io": "io.k8s.api.storage",
                "authorization.k8s.io": "io.k8s.api.authorization",
                "authentication.k8s.io": "io.k8s.api.authentication",
                "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"}
_V2_DROP = ("anyOf", "oneOf", "not", "nullable")
_OPEN_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def definition_name(kind: Kind) -> str:
    """``io.k8s.api.core.v1.ConfigMap`` for built-in kinds, ``io.kubevirt.v1.VirtualMachine``
    (the group reversed) for custom ones, as kube-apiserver names them."""
    prefix = _CORE_PREFIX.get(kind.group) if not kind.custom else None
    if prefix is None:
        prefix = ".".join(reversed(kind.group.split(".")))
    return f"{prefix}.{kind.version}.{kind.kind}"


def _kind_schema(kind: Kind, meta_ref: str) -> dict[str, Any]:
    schema = admission.schema_of(kind)
    if schema is not None:
        raw = schema.raw
    else:
        raw = coreschemas.core_schemas().get((kind.group, kind.version, kind.kind)) or {
            **_OPEN_OBJECT, "description": f"{kind.kind} (no schema is published for it)",
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}}
    out = dict(raw)  # shallow: the nested schemas are shared, never mutated
    out["properties"] = {**(raw.get("properties") or {}), "metadata": {
        "description": "Standard object's metadata.", "allOf": [{"$ref": meta_ref}]}}
    out["x-kubernetes-group-version-kind"] = [
        {"group": kind.group, "version": kind.version, "kind": kind.kind}]
    return out


def _operation(kind: Kind) -> dict[str, Any]:
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
              {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
              {"name": "dryRun", "in": "query", "schema": {"type": "string"}}]
    return {"x-kubernetes-group-version-kind": gvk, "parameters": params,
            "responses": {"200": {"description": "OK"}}}


def _item_path(kind: Kind) -> str:
    prefix = f"/api/{kind.version}" if not kind.group else f"/apis/{kind.group}/{kind.version}"
    return (f"{prefix}/namespaces/{{namespace}}/{kind.plural}/{{name}}" if kind.namespaced
            else f"{prefix}/{kind.plural}/{{name}}")


def _gv_document(kinds: list[Kind]) -> dict[str, Any]:
    ref = f"#/components/schemas/{OBJECT_META}"
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {OBJECT_META: schemas.object_meta()}
    for kind in kinds:
        op = _operation(kind)
        get = {"x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"],
               "responses": {"200": {"description": "OK", "content": {"application/json": {
                   "schema": {"$ref": f"#/components/schemas/{definition_name(kind)}"}}}}}}
        paths[_item_path(kind)] = {"get": get, "put": op, "patch": op}
        components[definition_name(kind)] = _kind_schema(kind, ref)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
            "paths": paths, "components": {"schemas": components}}


def _v2_strip(node: Any) -> Any:
    if isinstance(node, list):
        return [_v2_strip(n) for n in node]
    if not isinstance(node, dict):
        return node
    return {k: _v2_strip(v) for k, v in node.items() if k not in _V2_DROP}


def _v2_document(registry: KindRegistry) -> dict[str, Any]:
    ref = f"#/definitions/{OBJECT_META}"
    definitions: dict[str, Any] = {OBJECT_META: schemas.object_meta()}
    paths: dict[str, Any] = {}
    for kind in registry:
        definitions[definition_name(kind)] = _kind_schema(kind, ref)
        op = _operation(kind)
        op["parameters"] = [{"name": p["name"], "in": "query", "type": "string",
                             "uniqueItems": True} for p in op["parameters"]]
        paths[_item_path(kind)] = {"put": op, "patch": op}
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
            "paths": paths, "definitions": _v2_strip(definitions)}


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class _Documents:
    """Every document for one registry state, encoded."""

    def __init__(self, registry: KindRegistry) -> None:
        self.kinds = registry.kinds
        self.v3: dict[str, tuple[bytes, str]] = {}  # "apis/kubevirt.io/v1" -> (body, hash)
        for group, versions in registry.group_versions().items():
            for version in versions:
                key = f"api/{version}" if not group else f"apis/{group}/{version}"
                body = _encode(_gv_document(registry.in_group_version(group, version)))
                self.v3[key] = (body, hashlib.sha512(body).hexdigest().upper())
        self.root = _encode({"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"}
                                       for key, (_, h) in self.v3.items()}})
        self._registry = registry
        self._v2: tuple[bytes, str] | None = None

    def v2(self) -> tuple[bytes, str]:
        if self._v2 is None:
            body = _encode(_v2_document(self._registry))
            self._v2 = (body, '"' + hashlib.sha512(body).hexdigest()[:64].upper() + '"')
        return self._v2


# Per registry (one per cluster); weak, so a stopped cluster's documents go with it.
_cache: weakref.WeakKeyDictionary[KindRegistry, _Documents] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _documents(registry: KindRegistry) -> _Documents:
    with _lock:
        docs = _cache.get(registry)
        if docs is None or docs.kinds is not registry.kinds:
            docs = _Documents(registry)
            _cache[registry] = docs
        return docs


Answer = tuple[int, bytes, dict[str, str]]


def serve(registry: KindRegistry, parts: list[str], query: dict[str, str],
          headers: Any) -> Answer | None:
    """The answer to ``GET /openapi/...`` (``parts`` split on ``/``), or ``None`` when there is
    no such document (the caller answers 404)."""
    docs = _documents(registry)
    if parts == ["openapi", "v3"]:
        return 200, docs.root, {"Content-Type": "application/json",
                                "Cache-Control": "no-cache, private"}
    if parts[:2] == ["openapi", "v3"] and len(parts) > 2:
        found = docs.v3.get("/".join(parts[2:]))
        if found is None:
            return None
        body, digest = found
        cache = "public, immutable" if query.get("hash") == digest else "no-cache, private"
        return 200, body, {"Content-Type": "application/json", "Cache-Control": cache,
                           "Etag": f'"{digest}"'}
    if parts == ["openapi", "v2"]:
        accept = headers.get("Accept") or ""
        if accept and "json" not in accept and "*/*" not in accept:
            body = _encode({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": "only application/json is served",
                            "reason": "NotAcceptable", "code": 406})
            return 406, body, {"Content-Type": "application/json"}
        body, etag = docs.v2()
        if headers.get("If-None-Match") == etag:
            return 304, b"", {"Etag": etag}
        return 200, body, {"Content-Type": "application/json", "Etag": etag}
    return None
