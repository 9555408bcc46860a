"""Authentication and RBAC evaluation of the simulated API server."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.dynamic import exceptions as dexc

from statemachine.sim import auth
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import Store

MakeSim = Callable[..., SimulatedClusters]
RBAC = "rbac.authorization.k8s.io/v1"

SEED = {
    "source": [
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "vm-reader"},
         "rules": [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "vm-status"},
         "rules": [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines/status"],
                    "verbs": ["patch"]}]},
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": "ops-read"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "vm-reader"},
         "subjects": [{"kind": "User", "name": "ops"}]},
        {"apiVersion": RBAC, "kind": "RoleBinding",
         "metadata": {"name": "ops-status", "namespace": "apps"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "vm-status"},
         "subjects": [{"kind": "User", "name": "ops"}]},
        {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "one-cm", "namespace": "apps"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                    "resourceNames": ["allowed"]}]},
        {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "dev-cm",
                                                                 "namespace": "apps"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
         "subjects": [{"kind": "User", "name": "dev"}, {"kind": "Group", "name": "devs"}]},
    ],
    "target": [],
}


@pytest.fixture
def rbac_sim(make_sim: MakeSim) -> SimulatedClusters:
    return make_sim(seed=SEED, controllers=False)


def test_users_and_contexts_come_from_bindings(rbac_sim: SimulatedClusters) -> None:
    assert rbac_sim.users("source") == ["admin", "ops", "dev"]
    assert rbac_sim.users("target") == ["admin"]
    assert rbac_sim.token("source", "ops") != rbac_sim.token("target", "admin")
    # the namespace referenced by seeded objects was created
    assert rbac_sim.store("source").get("Namespace", "", "apps")["status"]["phase"] == "Active"
    text = rbac_sim.kubeconfig_path.read_text()
    assert "source-ops" in text and "source-dev" in text and "target-ops" not in text


def _allowed(store: Store, user: str, verb: str, group: str, resource: str, ns: str = "",
             name: str = "", sub: str = "") -> bool:
    return auth.allowed(store, auth.Attributes(user, verb, group, resource, ns, name, sub))


def test_rule_evaluation(rbac_sim: SimulatedClusters) -> None:
    store = rbac_sim.store("source")
    assert _allowed(store, "admin", "delete", "", "secrets", "kube-system")
    assert _allowed(store, "ops", "list", "kubevirt.io", "virtualmachines")  # cluster-wide
    assert not _allowed(store, "ops", "create", "kubevirt.io", "virtualmachines", "apps")
    assert _allowed(store, "ops", "patch", "kubevirt.io", "virtualmachines", "apps", "vm",
                    "status")
    assert not _allowed(store, "ops", "patch", "kubevirt.io", "virtualmachines", "other", "vm",
                        "status")  # RoleBinding → only in its namespace
    assert not _allowed(store, "ops", "patch", "kubevirt.io", "virtualmachines", "apps", "vm")
    assert _allowed(store, "dev", "get", "", "configmaps", "apps", "allowed")
    assert not _allowed(store, "dev", "get", "", "configmaps", "apps", "other")
    assert not _allowed(store, "devs", "get", "", "configmaps", "apps", "allowed")  # groups ignored


def test_http_answers(rbac_sim: SimulatedClusters, dynamic_client: Any) -> None:
    ops = dynamic_client(rbac_sim, "source", "ops")
    vms = ops.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    assert vms.get().kind == "VirtualMachineList"
    with pytest.raises(dexc.ForbiddenError) as err:
        vms.delete(name="vm", namespace="apps")
    body = json.loads(err.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'virtualmachines.kubevirt.io "vm" is forbidden: User "ops" cannot delete resource '
        '"virtualmachines" in API group "kubevirt.io" in the namespace "apps"')
    crs = ops.resources.get(api_version=RBAC, kind="ClusterRole")
    with pytest.raises(dexc.ForbiddenError) as err:
        crs.get()
    assert json.loads(err.value.body)["message"] == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "ops" cannot list resource '
        '"clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope')


def test_self_subject_access_review(rbac_sim: SimulatedClusters, dynamic_client: Any) -> None:
    dev = dynamic_client(rbac_sim, "source", "dev")
    ssar = dev.resources.get(api_version="authorization.k8s.io/v1",
                             kind="SelfSubjectAccessReview")

    def review(**attrs: str) -> bool:
        out = ssar.create(body={"apiVersion": "authorization.k8s.io/v1",
                                "kind": "SelfSubjectAccessReview",
                                "spec": {"resourceAttributes": attrs}})
        return bool(out.status.allowed)

    assert review(verb="get", resource="configmaps", namespace="apps", name="allowed")
    assert not review(verb="delete", resource="configmaps", namespace="apps", name="allowed")
