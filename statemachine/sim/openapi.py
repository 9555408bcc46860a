"""OpenAPI for the simulated API server: the v3 stub kubectl needs.

The stub (``/openapi/v3`` and ``/openapi/v3/<api|apis/group>/<version>``): one path per kind
whose ``patch`` operation carries ``x-kubernetes-group-version-kind`` and a ``fieldValidation``
parameter. That is all ``kubectl apply`` needs to switch to server-side field validation.
Admission (pruning, validation) is ``admission.py``.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim.kinds import KindRegistry

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
