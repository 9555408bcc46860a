"""Bearer-token authentication and RBAC authorization for the simulated API server.

Tokens map to user names (one token per seeded user per cluster; see ``cluster.py``). The user
``admin`` is a cluster-admin and bypasses RBAC. Every other user is authorized from the RBAC
objects in the cluster's store: ``ClusterRoleBinding`` grants its ``ClusterRole``'s rules
everywhere, ``RoleBinding`` grants its ``Role`` (or ``ClusterRole``) rules in its namespace. Only
``User`` subjects are considered (no groups, no service accounts), no aggregation. Discovery,
``/version`` and ``/openapi`` are open to every authenticated user (upstream's
``system:discovery``). Messages are the upstream ones, so clients print what they would print
against a real cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statemachine.errors import Forbidden
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Store

ADMIN = "admin"
SELF_REVIEWS = frozenset({"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"})
SELF_REVIEW_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})


@dataclass(frozen=True)
class Attributes:
    """One request as RBAC sees it."""

    user: str
    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def _rule_allows(rule: dict[str, Any], a: Attributes) -> bool:
    def has(values: Any, wanted: str) -> bool:
        return isinstance(values, list) and ("*" in values or wanted in values)

    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if not has(rule.get("verbs"), a.verb) or not has(rule.get("apiGroups"), a.group):
        return False
    if not has(rule.get("resources"), resource):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _names_user(binding: dict[str, Any], user: str) -> bool:
    return any(s.get("kind") == "User" and s.get("name") == user
               for s in binding.get("subjects") or [])


def allowed(store: Store, a: Attributes) -> bool:
    """Whether RBAC in ``store`` allows the request."""
    if a.user == ADMIN:
        return True
    # Upstream's system:basic-user lets every authenticated user ask what it may do.
    if a.group in SELF_REVIEW_GROUPS and a.resource in SELF_REVIEWS and a.verb == "create":
        return True
    for crb in store.list("ClusterRoleBinding"):
        if _names_user(crb, a.user):
            role = store.try_get("ClusterRole", "", (crb.get("roleRef") or {}).get("name", ""))
            if role and any(_rule_allows(r, a) for r in role.get("rules") or []):
                return True
    if a.namespace:
        for rb in store.list("RoleBinding", a.namespace):
            if not _names_user(rb, a.user):
                continue
            ref = rb.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                role = store.try_get("ClusterRole", "", ref.get("name", ""))
            else:
                role = store.try_get("Role", a.namespace, ref.get("name", ""))
            if role and any(_rule_allows(r, a) for r in role.get("rules") or []):
                return True
    return False


def forbidden(kind: Kind, a: Attributes) -> Forbidden:
    """The 403 upstream answers for a denied request."""
    target = f'{kind.qualified_resource} "{a.name}"' if a.name else kind.qualified_resource
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = (f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope")
    return Forbidden(f'{target} is forbidden: User "{a.user}" cannot {a.verb} resource '
                     f'"{resource}" in API group "{a.group}" {where}', status=403,
                     reason="Forbidden")


def users_in(objects: list[dict[str, Any]]) -> list[str]:
    """Every User subject named by the RBAC bindings among ``objects``, in first-seen order."""
    users: list[str] = []
    for obj in objects:
        if obj.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            for s in obj.get("subjects") or []:
                if s.get("kind") == "User" and s.get("name") and s["name"] not in users:
                    users.append(s["name"])
    return users
