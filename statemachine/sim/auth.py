"""Authentication identities and RBAC authorization for the simulated API server.

Tokens map to user names (one token per seeded user per cluster; see ``cluster.py``); service
account tokens come from ``tokens.py``. Every identity carries its groups, as upstream's
authenticators set them: ``admin`` is in ``system:masters`` (which bypasses RBAC, as upstream's
privileged-group authorizer does), seeded users in ``system:authenticated``, service accounts in
``system:serviceaccounts`` and ``system:serviceaccounts:<namespace>`` too. Everyone else is
authorized from the RBAC objects in the cluster's store: ``ClusterRoleBinding`` grants its
``ClusterRole``'s rules everywhere, ``RoleBinding`` grants its ``Role`` (or ``ClusterRole``) rules
in its namespace, to ``User``, ``Group`` and ``ServiceAccount`` subjects; rules match as upstream's
(``*``, ``*/subresource``, resourceNames, nonResourceURLs with a trailing ``*``). No aggregation.
Discovery, ``/version`` and ``/openapi`` are not checked (every authenticated user may read them,
upstream's ``system:discovery``); the bootstrap roles that say so are in ``rbacdefaults.py``.
:func:`decide` also gives upstream's reason (``RBAC: allowed by RoleBinding "b/ns" of Role "r"
to User "u"``, or the errors met, such as a binding's missing role), which SelfSubjectAccessReview
returns and a 403 message ends with. :func:`rules_for` is upstream's rule resolver, behind
SelfSubjectRulesReview. Messages are the upstream ones, so clients print what they would print
against a real cluster.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from statemachine.errors import Forbidden
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Store

ADMIN = "admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
SELF_REVIEWS = frozenset({"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"})
SELF_REVIEW_GROUPS = frozenset({"authorization.k8s.io", "authentication.k8s.io"})


@dataclass(frozen=True)
class Identity:
    """Who a request is from, as upstream's ``user.Info``."""

    name: str
    groups: tuple[str, ...] = (AUTHENTICATED,)
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def static(cls, name: str) -> Identity:
        """A seeded user (or ``admin``) authenticated by its static token."""
        return cls(name, (MASTERS, AUTHENTICATED) if name == ADMIN else (AUTHENTICATED,))

    @classmethod
    def service_account(cls, namespace: str, name: str, uid: str,
                        credential_id: str = "") -> Identity:
        extra = ((("authentication.kubernetes.io/credential-id", (credential_id,)),)
                 if credential_id else ())
        return cls(f"{SA_PREFIX}{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
                   uid, extra)

    def user_info(self) -> dict[str, Any]:
        """The ``UserInfo`` of a SelfSubjectReview."""
        info: dict[str, Any] = {"username": self.name}
        if self.uid:
            info["uid"] = self.uid
        info["groups"] = list(self.groups)
        if self.extra:
            info["extra"] = {k: list(v) for k, v in self.extra}
        return info


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
    groups: tuple[str, ...] = ()


def _has(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def _resource_matches(rules_resources: Any, resource: str, subresource: str) -> bool:
    if not isinstance(rules_resources, list):
        return False
    full = f"{resource}/{subresource}" if subresource else resource
    for r in rules_resources:
        if r == "*" or r == full:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def rule_allows(rule: dict[str, Any], a: Attributes) -> bool:
    """Whether one policy rule allows the resource request ``a`` (``a.user`` is not looked at)."""
    if not _has(rule.get("verbs"), a.verb) or not _has(rule.get("apiGroups"), a.group):
        return False
    if not _resource_matches(rule.get("resources"), a.resource, a.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def url_allows(rule: dict[str, Any], verb: str, path: str) -> bool:
    """Whether one policy rule allows ``verb`` on the non-resource URL ``path``."""
    if not _has(rule.get("verbs"), verb):
        return False
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def _applies(subject: dict[str, Any], user: str, groups: tuple[str, ...],
             binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user)
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return bool(user == f"{SA_PREFIX}{ns}:{name}")
    return False


def _subject(binding: dict[str, Any], user: str,
             groups: tuple[str, ...]) -> dict[str, Any] | None:
    """The first subject of ``binding`` that names the caller, or ``None``."""
    ns = (binding.get("metadata") or {}).get("namespace") or ""
    for s in binding.get("subjects") or []:
        if isinstance(s, dict) and _applies(s, user, groups, ns):
            return s
    return None


def _describe(binding: dict[str, Any], subject: dict[str, Any]) -> str:
    """Upstream's description of the binding that allowed a request (in its ``reason``)."""
    meta, ref = binding.get("metadata") or {}, binding.get("roleRef") or {}
    ns = meta.get("namespace") or ""
    who = subject.get("name", "")
    if subject.get("kind") == "ServiceAccount":
        who = f"{who}/{subject.get('namespace') or ns}"
    target = f'{subject.get("kind")} "{who}"'
    if binding.get("kind") == "RoleBinding" or ns:
        return (f'RoleBinding "{meta.get("name")}/{ns}" of {ref.get("kind")} '
                f'"{ref.get("name")}" to {target}')
    return (f'ClusterRoleBinding "{meta.get("name")}" of {ref.get("kind")} "{ref.get("name")}" '
            f"to {target}")


def _role_rules(store: Store, binding: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The rules a binding's roleRef grants, or an error text (upstream's lister message)."""
    ref = binding.get("roleRef") or {}
    name = ref.get("name", "")
    if ref.get("kind") == "ClusterRole":
        role = store.try_get("ClusterRole", "", name)
        missing = f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
    else:
        ns = (binding.get("metadata") or {}).get("namespace") or ""
        role = store.try_get("Role", ns, name)
        missing = f'role.rbac.authorization.k8s.io "{name}" not found'
    if role is None:
        return [], missing
    return [r for r in role.get("rules") or [] if isinstance(r, dict)], ""


Visit = tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], str]


def _visit(store: Store, user: str, groups: tuple[str, ...], namespace: str) -> Iterator[Visit]:
    """``(binding, subject, rules, error)`` per binding that applies: cluster bindings, then the
    namespace's. Lazy, so that an authorization check stops at the first binding that allows."""
    for crb in store.list("ClusterRoleBinding"):
        subject = _subject(crb, user, groups)
        if subject is not None:
            yield (crb, subject, *_role_rules(store, crb))
    if namespace:
        for rb in store.list("RoleBinding", namespace):
            subject = _subject(rb, user, groups)
            if subject is not None:
                yield (rb, subject, *_role_rules(store, rb))


def _aggregate(errors: list[str]) -> str:
    """apimachinery's ``NewAggregate(errs).Error()``: one error bare, several as ``[a, b]``."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]"


def _decide(store: Store, user: str, groups: tuple[str, ...], namespace: str,
            allows: Callable[[dict[str, Any]], bool]) -> tuple[bool, str]:
    """Upstream's authorizer chain: ``system:masters`` is allowed with no reason; RBAC allows
    with ``RBAC: allowed by <binding>``, or gives no opinion with the errors it met as reason."""
    if user == ADMIN or MASTERS in groups:
        return True, ""
    errors: list[str] = []
    for binding, subject, rules, error in _visit(store, user, groups, namespace):
        if error:
            errors.append(error)
        elif any(allows(rule) for rule in rules):
            return True, f"RBAC: allowed by {_describe(binding, subject)}"
    return False, f"RBAC: {_aggregate(errors)}" if errors else ""


def decide(store: Store, a: Attributes) -> tuple[bool, str]:
    """Whether RBAC in ``store`` allows the request, and upstream's reason."""
    ok, reason = _decide(store, a.user, a.groups, a.namespace, lambda r: rule_allows(r, a))
    # Upstream's system:basic-user lets every authenticated user ask what it may do; the
    # bootstrap binding says so, this holds even if a seed replaced it.
    if not ok and a.group in SELF_REVIEW_GROUPS and a.resource in SELF_REVIEWS and \
            a.verb == "create":
        return True, ""
    return ok, reason


def allowed(store: Store, a: Attributes) -> bool:
    """Whether RBAC in ``store`` allows the request."""
    return decide(store, a)[0]


def url_decide(store: Store, user: str, groups: tuple[str, ...], verb: str,
               path: str) -> tuple[bool, str]:
    """:func:`decide` for ``verb`` on the non-resource URL ``path`` (e.g. ``/healthz``)."""
    return _decide(store, user, groups, "", lambda r: url_allows(r, verb, path))


def rules_for(store: Store, identity: Identity, namespace: str) -> dict[str, Any]:
    """A SubjectRulesReviewStatus: every rule RBAC grants ``identity`` in ``namespace``.

    As upstream's RBAC rule resolver: each applicable rule with resources becomes a resource
    rule, each with nonResourceURLs a non-resource rule, in binding order; a binding whose role
    is missing contributes its error to ``evaluationError`` (one error bare, several as
    ``[a, b]``). RBAC enumerates everything it knows, so ``incomplete`` is false.
    """
    resource_rules: list[dict[str, Any]] = []
    url_rules: list[dict[str, Any]] = []
    errors: list[str] = []
    for _, _, rules, error in _visit(store, identity.name, identity.groups, namespace):
        if error and error not in errors:
            errors.append(error)
        for rule in rules:
            if rule.get("resources"):
                rr = {"verbs": list(rule.get("verbs") or []),
                      "apiGroups": list(rule.get("apiGroups") or []),
                      "resources": list(rule["resources"])}
                if rule.get("resourceNames"):
                    rr["resourceNames"] = list(rule["resourceNames"])
                resource_rules.append(rr)
            if rule.get("nonResourceURLs"):
                url_rules.append({"verbs": list(rule.get("verbs") or []),
                                  "nonResourceURLs": list(rule["nonResourceURLs"])})
    status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": url_rules,
                              "incomplete": False}
    if errors:
        status["evaluationError"] = _aggregate(errors)
    return status


def forbidden(kind: Kind, a: Attributes, reason: str = "") -> Forbidden:
    """The 403 upstream answers for a denied request (``reason``: the authorizer's, if any)."""
    return forbidden_resource(kind.qualified_resource, a, reason)


def forbidden_resource(qualified_resource: str, a: Attributes, reason: str = "") -> Forbidden:
    """:func:`forbidden` for a resource named as messages name it (``users``,
    ``uids.authentication.k8s.io``)."""
    target = f'{qualified_resource} "{a.name}"' if a.name else qualified_resource
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = (f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope")
    message = (f'{target} is forbidden: User "{a.user}" cannot {a.verb} resource '
               f'"{resource}" in API group "{a.group}" {where}')
    return Forbidden(f"{message}: {reason}" if reason else message, status=403,
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
