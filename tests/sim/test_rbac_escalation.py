"""RBAC's privilege-escalation prevention in the simulated API server (``escalation.py``).

A restricted user may write Roles and RoleBindings in ``apps`` and holds little else: it is
refused a Role (or a binding) granting more than it holds, with upstream's 403 and message,
through the ``kubernetes`` client and kubectl; allowed exactly its own permissions; allowed
anything with ``escalate`` (roles) or ``bind`` (bindings); ``admin`` (system:masters) always.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.dynamic import exceptions as dexc

from statemachine.sim import escalation
from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import KUBECTL, run_kubectl

RBAC = "rbac.authorization.k8s.io/v1"
REF = {"apiGroup": "rbac.authorization.k8s.io"}
GROUPS = '(groups=["system:authenticated"])'
HEAD = "is attempting to grant RBAC permissions not currently held:\n"


def _binding(name: str, ns: str, user: str, kind: str, role: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns} if ns else {"name": name}
    return {"apiVersion": RBAC, "kind": "RoleBinding" if ns else "ClusterRoleBinding",
            "metadata": meta, "subjects": [{"kind": "User", "name": user}],
            "roleRef": {**REF, "kind": kind, "name": role}}


SEED = {"source": [
    {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "rbac-writer"},
     "rules": [{"apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles", "rolebindings", "clusterroles"],
                "verbs": ["get", "create", "update", "patch"]}]},
    {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "cm-reader"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
               {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                "resourceNames": ["one"]},
               {"apiGroups": ["kubevirt.io"], "resources": ["*/status"], "verbs": ["get"]}]},
    {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "cm-admin"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]},
    {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "escalator", "namespace": "apps"},
     "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"],
                "verbs": ["escalate"]}]},
    {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "binder", "namespace": "apps"},
     "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                "verbs": ["bind"], "resourceNames": ["cm-admin"]},
               {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"],
                "verbs": ["bind"], "resourceNames": ["nope"]}]},
    # dev: writes RBAC objects in apps, reads ConfigMaps there
    _binding("dev-writer", "apps", "dev", "ClusterRole", "rbac-writer"),
    _binding("dev-cm", "apps", "dev", "ClusterRole", "cm-reader"),
    # esc: the same, plus escalate on roles in apps
    _binding("esc-writer", "apps", "esc", "ClusterRole", "rbac-writer"),
    _binding("esc-escalate", "apps", "esc", "Role", "escalator"),
    # binder: the same as dev, plus bind on the ClusterRole cm-admin and the Role "nope"
    _binding("binder-writer", "apps", "binder", "ClusterRole", "rbac-writer"),
    _binding("binder-bind", "apps", "binder", "Role", "binder"),
    # cw: writes ClusterRoles, reads ConfigMaps everywhere, and has a binding to a missing role
    _binding("cw-writer", "", "cw", "ClusterRole", "rbac-writer"),
    _binding("cw-cm", "", "cw", "ClusterRole", "cm-reader"),
    _binding("cw-dangling", "", "cw", "ClusterRole", "gone"),
], "target": []}


def _role(name: str, rules: list[dict[str, Any]], ns: str = "apps") -> dict[str, Any]:
    meta = {"name": name, "namespace": ns} if ns else {"name": name}
    return {"apiVersion": RBAC, "kind": "Role" if ns else "ClusterRole", "metadata": meta,
            "rules": rules}


def _rule(verbs: list[str], resources: list[str], groups: list[str] | None = None,
          names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [""] if groups is None else groups,
                            "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


@pytest.fixture
def esc_sim(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    return make_sim(seed=SEED, controllers=False)


@pytest.fixture
def api(esc_sim: SimulatedClusters, dynamic_client: Any) -> Callable[[str, str], Any]:
    """``api(user, kind)``: the user's dynamic-client resource for an RBAC kind."""
    clients: dict[str, Any] = {}

    def get(user: str, kind: str) -> Any:
        if user not in clients:
            clients[user] = dynamic_client(esc_sim, "source", user)
        return clients[user].resources.get(api_version=RBAC, kind=kind)
    return get


def _refused(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(dexc.ForbiddenError) as err:
        call()
    body: dict[str, Any] = json.loads(err.value.body)
    assert (body["code"], body["reason"]) == (403, "Forbidden")
    return body


def test_a_role_granting_more_than_held_is_refused(api: Any) -> None:
    roles = api("dev", "Role")
    wide = _role("too-much", [_rule(["get", "delete"], ["configmaps", "secrets"], ["", "apps"])])
    body = _refused(lambda: roles.create(body=wide, namespace="apps"))
    assert body["message"] == (
        f'roles.rbac.authorization.k8s.io "too-much" is forbidden: user "dev" {GROUPS} {HEAD}'
        '{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}\n'
        '{APIGroups:["apps"], Resources:["configmaps"], Verbs:["get" "delete"]}\n'
        '{APIGroups:["apps"], Resources:["secrets"], Verbs:["get" "delete"]}')
    assert body["details"] == {"name": "too-much", "group": "rbac.authorization.k8s.io",
                               "kind": "roles"}
    # A dry run gets the same answer, and nothing was stored either way.
    dry = _refused(lambda: roles.create(body=wide, namespace="apps", dry_run="All"))
    assert dry["message"] == body["message"]
    with pytest.raises(dexc.NotFoundError):
        roles.get(name="too-much", namespace="apps")
    # Its permissions hold in apps only (RoleBindings): the same role elsewhere is refused.
    mine = [_rule(["get", "list"], ["configmaps"])]
    with pytest.raises(dexc.ForbiddenError):
        api("dev", "Role").create(body=_role("elsewhere", mine, "default"),
                                  namespace="default")


def test_exactly_the_own_permissions_are_allowed(api: Any) -> None:
    roles = api("dev", "Role")
    mine = [_rule(["get", "list"], ["configmaps"]), _rule(["get"], ["secrets"], names=["one"]),
            _rule(["get"], ["virtualmachines/status", "*/status"], ["kubevirt.io"])]
    assert roles.create(body=_role("mine", mine), namespace="apps").metadata.name == "mine"
    # A name the user may read; names it may not, and any name where it holds only one.
    named = [_rule(["get"], ["configmaps"], names=["x"])]
    assert roles.create(body=_role("named", named), namespace="apps")
    body = _refused(lambda: roles.create(body=_role("any-secret", [_rule(["get"], ["secrets"])]),
                                         namespace="apps"))
    assert body["message"].endswith(HEAD + '{APIGroups:[""], Resources:["secrets"], '
                                           'Verbs:["get"]}')
    body = _refused(lambda: roles.create(
        body=_role("two", [_rule(["get"], ["secrets"], names=["one", "two"])]),
        namespace="apps"))
    assert body["message"].endswith(HEAD + '{APIGroups:[""], Resources:["secrets"], '
                                           'ResourceNames:["two"], Verbs:["get"]}')
    # `*` asked for is `*`: held only by a rule that says `*`.
    body = _refused(lambda: roles.create(body=_role("star", [_rule(["*"], ["configmaps"])]),
                                         namespace="apps"))
    assert body["message"].endswith('{APIGroups:[""], Resources:["configmaps"], Verbs:["*"]}')


def test_escalate_allows_any_role(api: Any) -> None:
    everything = [_rule(["*"], ["*"], ["*"])]
    created = api("esc", "Role").create(body=_role("all", everything), namespace="apps")
    assert created.rules[0].verbs == ["*"]
    # The escalate verb is on roles in apps only.
    with pytest.raises(dexc.ForbiddenError):
        api("esc", "Role").create(body=_role("all", everything, "default"), namespace="default")


def test_admin_is_never_checked(api: Any) -> None:
    everything = [_rule(["*"], ["*"], ["*"]), {"nonResourceURLs": ["*"], "verbs": ["*"]}]
    assert api("admin", "ClusterRole").create(body=_role("admin-all", everything, ""))
    assert api("admin", "Role").create(body=_role("admin-all", everything), namespace="apps")
    binding = _binding("admin-b", "apps", "x", "Role", "missing-role")
    assert api("admin", "RoleBinding").create(body=binding, namespace="apps")


def test_update_granting_more_is_refused(api: Any) -> None:
    roles = api("dev", "Role")
    roles.create(body=_role("grow", [_rule(["get"], ["configmaps"])]), namespace="apps")
    wider = [_rule(["get", "update"], ["configmaps"])]
    body = _refused(lambda: roles.patch(
        name="grow", namespace="apps", body={"rules": wider},
        content_type="application/merge-patch+json"))
    assert body["message"] == (
        f'roles.rbac.authorization.k8s.io "grow" is forbidden: user "dev" {GROUPS} {HEAD}'
        '{APIGroups:[""], Resources:["configmaps"], Verbs:["update"]}')
    current = roles.get(name="grow", namespace="apps").to_dict()
    current["rules"] = wider
    assert _refused(lambda: roles.replace(body=current, namespace="apps"))["message"] == \
        body["message"]
    applied = _role("grow", wider)
    assert _refused(lambda: roles.server_side_apply(
        body=applied, namespace="apps", field_manager="t", force_conflicts=True))["message"] == \
        body["message"]
    assert roles.get(name="grow", namespace="apps").rules[0].verbs == ["get"]
    # An update that stays within what it holds is allowed.
    label = {"metadata": {"labels": {"a": "b"}}}
    assert roles.patch(name="grow", namespace="apps", body=label,
                       content_type="application/merge-patch+json").metadata.labels.a == "b"


def test_a_role_it_cannot_grant_is_still_garbage_collectable(esc_sim: SimulatedClusters,
                                                            api: Any) -> None:
    api("admin", "Role").create(body=_role("big", [_rule(["*"], ["*"], ["*"])]),
                                namespace="apps")
    roles = api("dev", "Role")
    cm = esc_sim.store("source").create("ConfigMap", {"metadata": {"name": "o",
                                                                   "namespace": "apps"}})
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": cm["metadata"]["uid"]}
    patched = roles.patch(name="big", namespace="apps",
                          body={"metadata": {"ownerReferences": [owner]}},
                          content_type="application/merge-patch+json")
    assert patched.metadata.ownerReferences[0].name == "o"
    body = _refused(lambda: roles.patch(
        name="big", namespace="apps", body={"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json"))
    assert body["message"].startswith('roles.rbac.authorization.k8s.io "big" is forbidden: ')


def test_bindings_need_the_role_or_bind(api: Any) -> None:
    bindings = api("dev", "RoleBinding")
    body = _refused(lambda: bindings.create(
        body=_binding("admin-for-x", "apps", "x", "ClusterRole", "cm-admin"), namespace="apps"))
    assert body["message"] == (
        'rolebindings.rbac.authorization.k8s.io "admin-for-x" is forbidden: user "dev" '
        f'{GROUPS} {HEAD}'
        '{APIGroups:[""], Resources:["configmaps"], Verbs:["*"]}')
    assert body["details"]["kind"] == "rolebindings"
    # A role whose rules it holds may be bound.
    assert bindings.create(body=_binding("reader-for-x", "apps", "x", "ClusterRole", "cm-reader"),
                           namespace="apps")
    # bind on that ClusterRole (by name) allows it.
    assert api("binder", "RoleBinding").create(
        body=_binding("admin-for-x", "apps", "x", "ClusterRole", "cm-admin"), namespace="apps")
    # A missing role: its 404, unless bind is allowed on it.
    with pytest.raises(dexc.NotFoundError) as err:
        bindings.create(body=_binding("dangling", "apps", "x", "Role", "nope"), namespace="apps")
    missing = json.loads(err.value.body)
    assert (missing["reason"], missing["message"]) == (
        "NotFound", 'roles.rbac.authorization.k8s.io "nope" not found')
    assert api("binder", "RoleBinding").create(
        body=_binding("dangling", "apps", "x", "Role", "nope"), namespace="apps")
    # Updating a binding is checked again (here: a label on the one binder made).
    body = _refused(lambda: bindings.patch(
        name="admin-for-x", namespace="apps", body={"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json"))
    assert body["message"].startswith(
        'rolebindings.rbac.authorization.k8s.io "admin-for-x" is forbidden: user "dev"')


def test_cluster_roles_urls_aggregation_and_resolution_errors(api: Any) -> None:
    crs = api("cw", "ClusterRole")
    urls = [{"nonResourceURLs": ["/metrics", "/healthz"], "verbs": ["get"]},
            _rule(["get"], ["configmaps"])]
    body = _refused(lambda: crs.create(body=_role("urls", urls, "")))
    # cw's binding to the missing ClusterRole "gone" is reported after the missing permissions.
    assert body["message"] == (
        'clusterroles.rbac.authorization.k8s.io "urls" is forbidden: user "cw" '
        f'{GROUPS} {HEAD}'
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}'
        '; resolution errors: [clusterroles.rbac.authorization.k8s.io "gone" not found]')
    assert crs.create(body=_role("readers", [_rule(["list"], ["configmaps"])], ""))
    aggregated = {**_role("agg", [], ""),
                  "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}
    body = _refused(lambda: crs.create(body=aggregated))
    assert body["message"] == ('clusterroles.rbac.authorization.k8s.io "agg" is forbidden: '
                               "must have cluster-admin privileges to use the aggregationRule")


def test_compact_string_and_atoms() -> None:
    rule = {"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get"],
            "resourceNames": ["a"]}
    assert [escalation.compact_string(a) for a in escalation._atoms(rule)] == [
        '{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["get"]}',
        '{APIGroups:["apps"], Resources:["pods"], ResourceNames:["a"], Verbs:["get"]}']
    assert escalation.compact_string({"nonResourceURLs": ["/x"], "verbs": ["get", "post"]}) == \
        '{NonResourceURLs:["/x"], Verbs:["get" "post"]}'


def test_kubectl_is_told_why(esc_sim: SimulatedClusters, tmp_path: Path) -> None:
    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed (.ci/run installs it)")
    cache = tmp_path / "kubectl-cache"

    def kc(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubectl(esc_sim, cache, *args, context="source-dev", **kw)
    # kubectl create role: the typed client, a protobuf body.
    denied = kc("create", "role", "deleter", "-n", "apps", "--verb=delete",
                "--resource=configmaps", check=False)
    assert denied.returncode == 1
    assert denied.stderr == (
        'Error from server (Forbidden): roles.rbac.authorization.k8s.io "deleter" is forbidden: '
        f'user "dev" {GROUPS} {HEAD}'
        '{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}\n')
    assert kc("create", "role", "reader", "-n", "apps", "--verb=get",
              "--resource=configmaps").returncode == 0
    manifest = json.dumps(_binding("admin-for-x", "apps", "x", "ClusterRole", "cm-admin"))
    applied = kc("apply", "-f", "-", input=manifest, check=False)
    assert applied.returncode == 1
    assert ('rolebindings.rbac.authorization.k8s.io "admin-for-x" is forbidden: user "dev" '
            f'{GROUPS} {HEAD}'
            '{APIGroups:[""], Resources:["configmaps"], Verbs:["*"]}') in applied.stderr
