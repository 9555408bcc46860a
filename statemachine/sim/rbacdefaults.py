"""The bootstrap RBAC policy every simulated cluster starts with, as kube-apiserver creates it.

A real cluster has ``cluster-admin`` bound to the group ``system:masters``, and gives every
authenticated user ``system:basic-user`` (the self reviews), ``system:discovery`` and
``system:public-info-viewer`` (discovery, ``/version``, health checks). With these objects in the
store, ``kubectl get clusterroles`` shows them and SelfSubjectRulesReview (``kubectl auth can-i
--list``) lists what a real cluster lists for the same user. Only these four roles and their
bindings are created, not the ~70 controller and aggregate roles of a real cluster; their rules
are upstream's, their labels and annotations (``kubernetes.io/bootstrapping: rbac-defaults``,
``rbac.authorization.kubernetes.io/autoupdate``) too.

It holds data only; ``auth.py`` evaluates it.
"""
from __future__ import annotations

from typing import Any

RBAC = "rbac.authorization.k8s.io/v1"
_META = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}

_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ],
    "system:basic-user": [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
         "resources": ["selfsubjectreviews"]},
    ],
    "system:discovery": [
        {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                                               "/livez", "/openapi", "/openapi/*", "/readyz",
                                               "/version", "/version/"]},
    ],
    "system:public-info-viewer": [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                               "/version/"]},
    ],
}
_BOUND_TO = {"cluster-admin": "system:masters", "system:basic-user": "system:authenticated",
             "system:discovery": "system:authenticated",
             "system:public-info-viewer": "system:authenticated"}


def bootstrap_objects() -> list[dict[str, Any]]:
    """The ClusterRoles and ClusterRoleBindings above, as manifests."""
    out: list[dict[str, Any]] = []
    for name, rules in _ROLES.items():
        out.append({"apiVersion": RBAC, "kind": "ClusterRole",
                    "metadata": {"name": name, **_META}, "rules": rules})
    for name, group in _BOUND_TO.items():
        subjects = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]
        if name == "system:public-info-viewer":
            subjects.append({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                             "name": "system:unauthenticated"})
        out.append({"apiVersion": RBAC, "kind": "ClusterRoleBinding",
                    "metadata": {"name": name, **_META},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": name},
                    "subjects": subjects})
    return out
