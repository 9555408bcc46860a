"""RBAC's privilege-escalation prevention on writes of Roles, ClusterRoles and their bindings.

kube-apiserver does not let a user grant permissions it does not hold (the RBAC docs, "Privilege
escalation prevention and bootstrapping"; ``pkg/registry/rbac``: ``escalation_check.go``, the
``policybased`` storages of the four kinds, ``validation/rule.go`` ConfirmNoEscalation and
component-helpers' ``Covers``). The check runs in the kinds' storage, so on every create and
update whatever the verb (POST, PUT, patches, server-side apply, dry runs alike):

- a requester in the group ``system:masters`` is never checked;
- a Role or ClusterRole is allowed when RBAC authorizes the requester for the verb ``escalate``
  on ``roles``/``clusterroles`` in ``rbac.authorization.k8s.io``, in the request's namespace and
  with the name on the request's URL (upstream's ``requestInfo.Name``: empty for a create by
  POST, so a ``resourceNames``-restricted ``escalate`` does not allow creates); otherwise every
  permission its rules grant must be covered by the requester's own rules (the rule resolver's
  RulesFor: cluster-wide bindings, plus the namespace's RoleBindings for a Role). A ClusterRole
  that has (or had) an ``aggregationRule`` needs full authority (``*`` on everything and every
  non-resource URL);
- a RoleBinding or ClusterRoleBinding is allowed when RBAC authorizes the verb ``bind`` on the
  role it references (``roles`` or ``clusterroles``, the roleRef's API group and name, the
  binding's namespace, "" for a ClusterRoleBinding); otherwise that role's rules must be covered
  as above, and a role that does not exist is its storage's 404 (``roles.rbac.authorization.k8s.io
  "x" not found``);
- an update that changes nothing but what the garbage collector changes (ownerReferences,
  finalizers) is not checked (upstream's IsOnlyMutatingGCFields).

Coverage is per atomic permission (API group, resource, verb, resource name; non-resource URL,
verb), judged by ``auth.rule_allows`` / ``auth.url_allows``, the matchers RBAC authorizes with:
``*`` covers its whole field, ``*/sub`` covers any resource's subresource ``sub``; an owner rule
with resourceNames covers only those names, so a requested rule without names needs an owner
rule without names. A refusal is upstream's 403: ``roles.rbac.authorization.k8s.io "r" is
forbidden: user "u" (groups=["g" ...]) is attempting to grant RBAC permissions not currently
held:`` then one line per missing permission, those of one (group, resource, name) merged into
one line, sorted (``{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}``), and ``;
resolution errors: [...]`` when a binding of the requester names a missing role.

Where the simulator differs: the check runs as the store's admission hook, after the store's own
checks of a create (namespace, name, AlreadyExists, object validation), where upstream checks
first; a refused request is refused either way, with another status when it also breaks one of
those. The name in the message is the stored name (a ``generateName`` create shows the generated
one, upstream none).

It decides nothing else: authorization of the request itself is the API server's (``auth.py``).
"""
from __future__ import annotations

from typing import Any

from statemachine.errors import ClusterError, Forbidden, NotFound
from statemachine.sim import admission, auth
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Store
from statemachine.sim.validation import go_quote

Obj = dict[str, Any]
Hook = Any  # the store's admission hook: (kind, new, old, subresource) -> None
GROUP = "rbac.authorization.k8s.io"
_ROLES = {"Role": "roles", "ClusterRole": "clusterroles"}
_BINDINGS = {"RoleBinding": "rolebindings", "ClusterRoleBinding": "clusterrolebindings"}
#: What a ClusterRole with an aggregationRule needs (upstream's fullAuthority).
FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                  {"verbs": ["*"], "nonResourceURLs": ["*"]}]
#: Metadata the garbage collector changes, and what a comparison of two versions ignores.
_GC_FIELDS = ("ownerReferences", "finalizers", "selfLink", "resourceVersion", "managedFields")


def hook(store: Store, inner: Hook) -> Hook:
    """The store's admission hook: this check first (upstream's storage checks before the
    validating admission), then ``inner``."""
    def run(kind: Kind, new: Obj, old: Obj | None, subresource: str | None) -> None:
        if kind.group == GROUP and not subresource:
            who = admission.requester()
            if who is not None:
                check(store, who[0], who[1], kind, new, old)
        inner(kind, new, old, subresource)
    return run


def check(store: Store, who: auth.Identity, url_name: str, kind: Kind, new: Obj,
          old: Obj | None) -> None:
    """Refuse ``new`` (the next version of ``old``; ``None`` for a create) when ``who`` would
    grant more than it holds (see the module doc). ``url_name``: the name on the request's URL."""
    if kind.kind not in _ROLES and kind.kind not in _BINDINGS:
        return
    if auth.MASTERS in who.groups:
        return
    if old is not None and _only_gc_fields(new, old):
        return
    meta = new.get("metadata") or {}
    namespace = (meta.get("namespace") or "") if kind.namespaced else ""
    name = str(meta.get("name") or "")
    if kind.kind in _ROLES:
        resource = _ROLES[kind.kind]
        if _authorized(store, who, "escalate", GROUP, resource, namespace, url_name):
            return
        _confirm(store, who, namespace, resource, name, _rules(new))
        if kind.kind == "ClusterRole" and (_aggregates(new) or _aggregates(old)) and \
                _missing(store, who, namespace, FULL_AUTHORITY)[0]:
            raise _forbidden(resource, name,
                             "must have cluster-admin privileges to use the aggregationRule")
        return
    resource = _BINDINGS[kind.kind]
    ref = new.get("roleRef") or {}
    ref = ref if isinstance(ref, dict) else {}
    ref_kind, ref_name = ref.get("kind"), str(ref.get("name") or "")
    if ref_kind in _ROLES:
        # roleRef.apiGroup defaults to rbac.authorization.k8s.io before the check.
        group = str(ref.get("apiGroup") or GROUP)
        if _authorized(store, who, "bind", group, _ROLES[ref_kind], namespace, ref_name):
            return
    _confirm(store, who, namespace, resource, name, _referenced_rules(store, ref, namespace))


def _authorized(store: Store, who: auth.Identity, verb: str, group: str, resource: str,
                namespace: str, name: str) -> bool:
    return auth.allowed(store, auth.Attributes(who.name, verb, group, resource, namespace, name,
                                               "", who.groups))


def _rules(obj: Obj | None) -> list[Obj]:
    rules = (obj or {}).get("rules") or []
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def _aggregates(obj: Obj | None) -> bool:
    rule = (obj or {}).get("aggregationRule")
    return isinstance(rule, dict) and bool(rule.get("clusterRoleSelectors"))


def _referenced_rules(store: Store, ref: Obj, namespace: str) -> list[Obj]:
    """The rules of the role a binding references (upstream's GetRoleReferenceRules, through the
    roles' storage: a missing role is its 404)."""
    kind, name = ref.get("kind"), str(ref.get("name") or "")
    if kind == "ClusterRole":
        role = store.peek("ClusterRole", "", name)
    elif kind == "Role":
        role = store.peek("Role", namespace, name) if namespace else None
    else:
        raise ClusterError(f"Internal error occurred: unsupported role reference kind: "
                           f"{go_quote(str(kind or ''))}", status=500, reason="InternalError")
    if role is None:
        resource = _ROLES[str(kind)]
        exc = NotFound(f"{resource}.{GROUP} {go_quote(name)} not found", status=404,
                       reason="NotFound")
        exc.status_details = {"name": name, "group": GROUP,  # type: ignore[attr-defined]
                              "kind": resource}
        raise exc
    return _rules(role)


def _atoms(rule: Obj) -> list[Obj]:
    """One rule as its atomic permissions, in upstream's order (BreakdownRule)."""
    def strings(field: str) -> list[str]:
        values = rule.get(field) or []
        return [str(v) for v in values] if isinstance(values, list) else []
    verbs, names = strings("verbs"), strings("resourceNames")
    out: list[Obj] = []
    for group in strings("apiGroups"):
        for resource in strings("resources"):
            for verb in verbs:
                base = {"apiGroups": [group], "resources": [resource]}
                if names:
                    out += [{**base, "resourceNames": [n], "verbs": [verb]} for n in names]
                else:
                    out.append({**base, "verbs": [verb]})
    for url in strings("nonResourceURLs"):
        out += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in verbs]
    return out


def _covered(atom: Obj, status: Obj) -> bool:
    verb = atom["verbs"][0]
    if "nonResourceURLs" in atom:
        return any(auth.url_allows(r, verb, atom["nonResourceURLs"][0])
                   for r in status["nonResourceRules"])
    resource, _, sub = atom["resources"][0].partition("/")
    name = (atom.get("resourceNames") or [""])[0]
    a = auth.Attributes("", verb, atom["apiGroups"][0], resource, "", name, sub)
    # A permission on any name needs an owner rule on any name (rule_allows would let an
    # owner rule naming "" cover it).
    return any(auth.rule_allows(r, a) and (name or not r.get("resourceNames"))
               for r in status["resourceRules"])


def _missing(store: Store, who: auth.Identity, namespace: str,
             rules: list[Obj]) -> tuple[list[Obj], str]:
    """The atomic permissions among ``rules`` that ``who``'s own rules in ``namespace`` do not
    cover, and the rule resolver's errors (a binding of ``who`` naming a missing role)."""
    status = auth.rules_for(store, who, namespace)
    missing = [atom for rule in rules for atom in _atoms(rule)
               if not _covered(atom, status)]
    return missing, str(status.get("evaluationError") or "")


def _compact(atoms: list[Obj]) -> list[Obj]:
    """Upstream's CompactRules: the permissions of one (group, resource, name) in one rule."""
    merged: dict[tuple[str, str, tuple[str, ...]], Obj] = {}
    out: list[Obj] = []
    for atom in atoms:
        if "nonResourceURLs" in atom:
            out.append(atom)
            continue
        key = (atom["apiGroups"][0], atom["resources"][0], tuple(atom.get("resourceNames") or ()))
        if key in merged:
            merged[key]["verbs"].append(atom["verbs"][0])
        else:
            merged[key] = {**atom, "verbs": list(atom["verbs"])}
    return out + list(merged.values())


def _go_strings(values: list[str]) -> str:
    """Go's ``%q`` of a ``[]string``."""
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def compact_string(rule: Obj) -> str:
    """Upstream's CompactString of a rule: ``{APIGroups:[""], Resources:["pods"], Verbs:[...]}``."""
    parts = [f"{label}:{_go_strings(rule[field])}"
             for label, field in (("APIGroups", "apiGroups"), ("Resources", "resources"),
                                  ("NonResourceURLs", "nonResourceURLs"),
                                  ("ResourceNames", "resourceNames"), ("Verbs", "verbs"))
             if rule.get(field)]
    return "{" + ", ".join(parts) + "}"


def _confirm(store: Store, who: auth.Identity, namespace: str, resource: str, name: str,
             rules: list[Obj]) -> None:
    """Upstream's ConfirmNoEscalation: raise the 403 unless ``who`` holds all of ``rules``."""
    missing, errors = _missing(store, who, namespace, rules)
    if not missing:
        return
    lines = sorted({compact_string(rule) for rule in _compact(missing)})
    message = (f"user {go_quote(who.name)} (groups={_go_strings(list(who.groups))}) is "
               f"attempting to grant RBAC permissions not currently held:\n" + "\n".join(lines))
    if errors:
        # The roles' storage names a missing role by its resource (the authorizer's lister,
        # whose text auth.rules_for gives, by its singular).
        errors = errors.replace('role.rbac.authorization.k8s.io "',
                                'roles.rbac.authorization.k8s.io "')
        message += f"; resolution errors: [{errors}]"
    raise _forbidden(resource, name, message)


def _forbidden(resource: str, name: str, message: str) -> Forbidden:
    target = f"{resource}.{GROUP} {go_quote(name)}" if name else f"{resource}.{GROUP}"
    exc = Forbidden(f"{target} is forbidden: {message}", status=403, reason="Forbidden")
    exc.status_details = {"name": name, "group": GROUP,  # type: ignore[attr-defined]
                          "kind": resource}
    if not name:
        exc.status_details.pop("name")  # type: ignore[attr-defined]
    return exc


def _semantic(value: Any) -> Any:
    """``value`` with empty and zero values dropped, as upstream's semantic equality compares
    (a missing list equals an empty one)."""
    if isinstance(value, dict):
        return {k: _semantic(v) for k, v in value.items()
                if not (v is None or v == "" or v is False or v == [] or v == {})}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _only_gc_fields(new: Obj, old: Obj) -> bool:
    def strip(obj: Obj) -> Any:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _GC_FIELDS}
        return _semantic({**obj, "metadata": meta})
    return bool(strip(new) == strip(old))
