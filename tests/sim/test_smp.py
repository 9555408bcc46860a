"""Strategic merge patch on built-in kinds by each field's patch strategy and merge key, and its
directives, through kubectl (``patch --type=strategic`` and client-side ``apply``), the
``kubernetes`` client and lightkube (apiserver-fidelity.md §6)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from statemachine.sim.cluster import SimulatedClusters

Kubectl = Callable[..., CompletedProcess[str]]

POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "1"},
                 "finalizers": ["example.com/a", "example.com/b"]},
    "spec": {
        "containers": [
            {"name": "app", "image": "app:1", "args": ["--a", "--b"],
             "ports": [{"containerPort": 80}, {"containerPort": 443}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "sidecar", "image": "proxy:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "k1", "operator": "Exists"}],
    },
}


def _pod(kubectl: Kubectl, tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(POD))
    kubectl("create", "-f", str(path))


def _patch(kubectl: Kubectl, patch: Any) -> dict[str, Any]:
    out = kubectl("patch", "pod", "web", "--type=strategic", "-p", json.dumps(patch),
                  "-o", "json")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def test_lists_merge_by_their_merge_key(kubectl: Kubectl, tmp_path: Path) -> None:
    _pod(kubectl, tmp_path)
    pod = _patch(kubectl, {"spec": {
        "containers": [{"name": "app", "image": "app:2",
                        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                        "ports": [{"containerPort": 8080}],
                        "args": ["--only"]}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "tolerations": [{"key": "k2", "operator": "Exists"}]}})
    app = _container(pod, "app")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "sidecar"]
    assert app["image"] == "app:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"},
                          {"name": "C", "value": "3"}]
    assert [p["containerPort"] for p in app["ports"]] == [80, 443, 8080]
    assert app["args"] == ["--only"]  # no patch strategy: replaced
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["data", "cache"]
    assert pod["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]  # replaced
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "1"}


def test_directives(kubectl: Kubectl, tmp_path: Path) -> None:
    _pod(kubectl, tmp_path)
    pod = _patch(kubectl, {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"],
                     "labels": {"tier": None}},
        "spec": {"containers": [{"name": "sidecar", "$patch": "delete"},
                                {"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]}})
    assert pod["metadata"]["finalizers"] == ["example.com/b"]
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    assert _container(pod, "app")["env"] == [{"name": "B", "value": "2"}]
    # $patch: replace on a list replaces it whole; on a map, the map
    pod = _patch(kubectl, {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x:1"}]},
        "metadata": {"labels": {"$patch": "replace", "new": "yes"}}})
    assert pod["spec"]["containers"] == [{"name": "only", "image": "x:1"}]
    assert pod["metadata"]["labels"] == {"new": "yes"}
    # $retainKeys (volumes are merge,retainKeys): emptyDir -> configMap drops emptyDir
    pod = _patch(kubectl, {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}]}})
    assert pod["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]
    # $setElementOrder gives the order of the merged list
    pod = _patch(kubectl, {"spec": {
        "$setElementOrder/containers": [{"name": "second"}, {"name": "only"}],
        "containers": [{"name": "second", "image": "y:1"}]}})
    assert [c["name"] for c in pod["spec"]["containers"]] == ["second", "only"]


def test_malformed_directive_and_missing_merge_key_are_400(kubectl: Kubectl,
                                                            tmp_path: Path) -> None:
    _pod(kubectl, tmp_path)
    bad = kubectl("patch", "pod", "web", "--type=strategic", "-p",
                  json.dumps({"spec": {"containers": [{"image": "no-name"}]}}), check=False)
    assert bad.returncode != 0
    assert "does not contain declared merge key: name" in bad.stderr


def test_custom_resources_refuse_strategic_merge(kubectl: Kubectl, tmp_path: Path) -> None:
    path = tmp_path / "dv.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": "disk", "namespace": "default"},
        "spec": {"source": {"blank": {}},
                 "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}))
    kubectl("create", "-f", str(path))
    out = kubectl("patch", "dv", "disk", "--type=strategic", "-p",
                  '{"metadata":{"labels":{"a":"b"}}}', check=False)
    assert out.returncode != 0
    assert ("the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml") in out.stderr


def test_client_side_apply_three_way_merge(kubectl: Kubectl, tmp_path: Path) -> None:
    """kubectl apply (client-side) sends a strategic merge patch computed from the
    last-applied annotation: dropped list items and labels go, others' additions stay."""
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(POD))
    kubectl("apply", "-f", str(path))
    # someone else adds an env var and a label
    kubectl("patch", "pod", "web", "--type=strategic", "-p", json.dumps(
        {"metadata": {"labels": {"owner": "ops"}},
         "spec": {"containers": [{"name": "app", "env": [{"name": "OPS", "value": "1"}]}]}}))
    changed = json.loads(json.dumps(POD))
    del changed["metadata"]["labels"]["tier"]
    app = changed["spec"]["containers"][0]
    app["env"] = [{"name": "B", "value": "2"}, {"name": "Z", "value": "26"}]
    app["image"] = "app:3"
    changed["spec"]["containers"].pop()  # sidecar dropped
    path.write_text(yaml.safe_dump(changed))
    kubectl("apply", "-f", str(path))
    pod = json.loads(kubectl("get", "pod", "web", "-o", "json", "--show-managed-fields").stdout)
    assert pod["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    env = {e["name"]: e["value"] for e in _container(pod, "app")["env"]}
    assert env == {"B": "2", "Z": "26", "OPS": "1"}
    assert _container(pod, "app")["image"] == "app:3"
    managers = {(e["manager"], e["operation"]) for e in pod["metadata"]["managedFields"]}
    assert ("kubectl-client-side-apply", "Update") in managers
    assert ("kubectl-patch", "Update") in managers
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]


def test_python_clients_default_to_strategic_merge(sim: SimulatedClusters) -> None:
    lightkube = pytest.importorskip("lightkube")
    from lightkube.resources.core_v1 import Pod
    api = k8s_config.new_client_from_config(config_file=str(sim.kubeconfig_path),
                                            context="source")
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod("default", POD)
    # the typed client's patch of a Pod is a strategic merge patch
    core.patch_namespaced_pod("web", "default", {"spec": {"containers": [
        {"name": "sidecar", "image": "proxy:2"}]}})
    lk = lightkube.Client(config=lightkube.KubeConfig.from_file(
        str(sim.kubeconfig_path)).get(context_name="source"), namespace="default")
    try:
        patched = lk.patch(Pod, "web", {"spec": {"containers": [
            {"name": "app", "env": [{"name": "LK", "value": "1"}]}]}})
    finally:
        lk._client._client.close()
    assert [(c.name, c.image) for c in patched.spec.containers] == [
        ("app", "app:1"), ("sidecar", "proxy:2")]
    assert [e.name for e in patched.spec.containers[0].env] == ["A", "B", "LK"]
