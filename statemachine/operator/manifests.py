"""``smrun operator manifests``: everything an install of the operator needs, as YAML.

The CRD (:mod:`statemachine.operator.crd`), a ServiceAccount, a ClusterRole and its binding, a
Deployment of two replicas and a PodDisruptionBudget. The ClusterRole is least privilege and
derived, not written by hand: what every installed itinerary (the built-ins and those providers
install) can do in any of its states, optional ones and undo included, comes from the derivation
of preflight's RBAC check (``preflight.itinerary_needs`` → ``resource_verbs`` →
``policy_rules``: the kinds each template can create are read from its text, every branch, so no
plan is needed), plus what the Roles those states create grant (Kubernetes lets a subject
create a Role only if it holds every permission the Role grants:
``preflight.itinerary_role_grants``); to them are added what the operator itself uses (its Plans and their status,
Events, Leases, the journals' ConfigMaps, and the discovery kopf does). No wildcards. The role
is one ClusterRole because the operator acts in the namespaces its Plans name, on both clusters
when they are the same. Itineraries a Plan names by file are not installed, so not in it:
preflight refuses such a Plan with the rules it lacks.

It prints; it applies nothing and talks to no cluster.
"""
from __future__ import annotations

from typing import Any

import yaml

from statemachine.operator import crd

DEFAULT_NAMESPACE = "smrun-system"
DEFAULT_IMAGE = "ghcr.io/smrun/smrun:latest"
NAME = "smrun-operator"

# What the operator does besides running itineraries: kopf lists/watches Plans and patches them
# (finalizers, annotations), the status subresource, Events on Plans and VMs, Leases (one per
# Plan, for the replica acting on it), each Plan's journal (ConfigMaps beside the Plan,
# clusterjournal.py), CRD and namespace discovery.
OPERATOR_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (crd.GROUP, crd.PLURAL, ("get", "list", "watch", "patch", "update")),
    (crd.GROUP, f"{crd.PLURAL}/status", ("get", "patch", "update")),
    ("", "events", ("create", "patch")),
    ("events.k8s.io", "events", ("create", "patch")),
    ("coordination.k8s.io", "leases", ("create", "get", "list", "watch", "update", "patch",
                                       "delete")),
    ("", "configmaps", ("create", "get", "list", "patch", "delete")),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
    ("", "namespaces", ("get", "list", "watch")),
    ("authorization.k8s.io", "selfsubjectaccessreviews", ("create",)),
    ("authorization.k8s.io", "selfsubjectrulesreviews", ("create",)),
)


def itinerary_verbs() -> dict[tuple[str, str], set[str]]:
    """Verbs per (API group, resource) that some state of some installed itinerary can use:
    the built-ins and those providers install (``smrun itineraries``)."""
    from statemachine.engine.preflight import itinerary_needs, itinerary_role_grants, resource_verbs
    from statemachine.itinerary import load_itinerary
    from statemachine.providers.catalog import installed_itineraries

    merged: dict[tuple[str, str], set[str]] = {}
    for installed in installed_itineraries():
        itinerary = load_itinerary(installed.path)
        for part in (resource_verbs(itinerary_needs(itinerary)), itinerary_role_grants(itinerary)):
            for key, verbs in part.items():
                merged.setdefault(key, set()).update(verbs)
    return merged


def cluster_role_rules() -> list[dict[str, Any]]:
    from statemachine.engine.preflight import policy_rules

    verbs = itinerary_verbs()
    for group, resource, extra in OPERATOR_RULES:
        verbs.setdefault((group, resource), set()).update(extra)
    return policy_rules(verbs)


def manifests(namespace: str = DEFAULT_NAMESPACE, image: str = DEFAULT_IMAGE) -> list[dict[str, Any]]:
    """The install, in apply order."""
    labels = {"app.kubernetes.io/name": "smrun", "app.kubernetes.io/component": "operator"}
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}},
        crd.plan_crd(),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": NAME, "labels": labels}, "rules": cluster_role_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": NAME, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": NAME,
                "containers": [{
                    "name": "operator", "image": image,
                    # --id from the pod name: status.operator names the acting replica.
                    "args": ["operator", "--all-namespaces", "--metrics-port", "8080",
                             "--health-port", "8081", "--state-dir", "/var/lib/smrun"],
                    "env": [{"name": "POD_NAME",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "SMRUN_OPERATOR_ID", "value": "$(POD_NAME)"}],
                    "ports": [{"name": "metrics", "containerPort": 8080},
                              {"name": "health", "containerPort": 8081}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}},
                    "volumeMounts": [{"name": "state", "mountPath": "/var/lib/smrun"}],
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
                "volumes": [{"name": "state", "emptyDir": {}}],
            }},
        }},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
         "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
    ]


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
