"""Discovery documents of the simulated API server: ``/version``, ``/api``, ``/apis``,
``/apis/<group>`` and the group-version resource lists (with ``status`` subresources).

Aggregated discovery (``apidiscovery.k8s.io/v2``) is not served: clients fall back to these
legacy documents when the response is plain JSON.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim.kinds import Kind, KindRegistry

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4-smrun-sim",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc",
           "platform": "linux/amd64"}


def api_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: KindRegistry) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in registry.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: KindRegistry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _resource(k: Kind) -> dict[str, Any]:
    out: dict[str, Any] = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                           "kind": k.kind, "verbs": list(k.verbs)}
    if k.short_names:
        out["shortNames"] = list(k.short_names)
    if k.categories:
        out["categories"] = list(k.categories)
    return out


def resource_list(registry: KindRegistry, group: str, version: str) -> dict[str, Any] | None:
    kinds = registry.in_group_version(group, version)
    if not kinds:
        return None
    resources: list[dict[str, Any]] = []
    for k in kinds:
        resources.append(_resource(k))
        if k.status_subresource:
            resources.append({"name": f"{k.plural}/status", "singularName": "",
                              "namespaced": k.namespaced, "kind": k.kind,
                              "verbs": ["get", "patch", "update"]})
        if k.scale is not None:
            resources.append({"name": f"{k.plural}/scale", "singularName": "",
                              "namespaced": k.namespaced, "group": "autoscaling",
                              "version": "v1", "kind": "Scale",
                              "verbs": ["get", "patch", "update"]})
        if k.kind == "ServiceAccount" and not k.group:  # TokenRequest (reviews.py)
            resources.append({"name": "serviceaccounts/token", "singularName": "",
                              "namespaced": True, "group": "authentication.k8s.io",
                              "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}
