"""kubectl (a real, independent client) against the simulated clusters."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

MULTI_DOC = """\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  color: blue
---
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: disk
  namespace: demo
  annotations:
    sim.smrun.io/hold: "true"
spec:
  source:
    blank: {}
  storage:
    resources:
      requests:
        storage: 1Gi
"""


@pytest.fixture
def sim(make_sim: Callable[..., SimulatedClusters], tmp_path: Any) -> SimulatedClusters:
    """Without controllers: these tests check the protocol, objects stay as written."""
    return make_sim(controllers=False, kubeconfig_out=tmp_path / "kubeconfig")


def _later(delay: float, action: Callable[[], Any]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_get_lists_seeded_and_created_objects(sim: SimulatedClusters, kubectl: Kubectl) -> None:
    out = kubectl("get", "namespaces", "-o", "json").stdout
    names = {i["metadata"]["name"] for i in json.loads(out)["items"]}
    assert {"default", "kube-system"} <= names
    missing = kubectl("get", "configmap", "nope", check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): configmaps "nope" not found' in missing.stderr


def test_apply_multi_document_then_configure(sim: SimulatedClusters, kubectl: Kubectl,
                                             tmp_path: Any) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MULTI_DOC)
    out = kubectl("apply", "-f", str(manifest)).stdout
    assert "namespace/demo created" in out
    assert "configmap/settings created" in out
    assert "datavolume.cdi.kubevirt.io/disk created" in out
    assert sim.store("source").get("ConfigMap", "demo", "settings")["data"] == {"color": "blue"}
    manifest.write_text(MULTI_DOC.replace("color: blue", "color: red"))
    out = kubectl("apply", "-f", str(manifest)).stdout
    assert "configmap/settings configured" in out
    assert "namespace/demo unchanged" in out
    assert sim.store("source").get("ConfigMap", "demo", "settings")["data"] == {"color": "red"}
    # the target cluster is a different cluster
    other = kubectl("get", "configmap", "settings", "-n", "demo", context="target", check=False)
    assert "NotFound" in other.stderr


def test_patch_merge_and_label(sim: SimulatedClusters, kubectl: Kubectl) -> None:
    store = sim.store("source")
    store.create("ConfigMap", {"metadata": {"name": "cm", "namespace": "default"},
                               "data": {"a": "1"}})
    kubectl("patch", "configmap", "cm", "--type=merge", "-p", '{"data":{"b":"2","a":null}}')
    assert store.get("ConfigMap", "default", "cm")["data"] == {"b": "2"}
    kubectl("label", "configmap", "cm", "tier=gold")
    assert store.get("ConfigMap", "default", "cm")["metadata"]["labels"] == {"tier": "gold"}
    out = kubectl("get", "configmaps", "-l", "tier=gold", "-o", "name").stdout.split()
    assert out == ["configmap/cm"]
    assert kubectl("get", "configmaps", "-l", "tier!=gold", "-o", "name").stdout.strip() == ""


def test_delete_waits_for_finalizer_removal(sim: SimulatedClusters, kubectl: Kubectl) -> None:
    store = sim.store("source")
    store.create("ConfigMap", {"metadata": {"name": "held", "namespace": "default",
                                            "finalizers": ["smrun.io/test"]}})
    remover = _later(1.0, lambda: store.remove_finalizer("ConfigMap", "default", "held",
                                                         "smrun.io/test"))
    started = time.monotonic()
    out = kubectl("delete", "configmap", "held", "--timeout=20s").stdout
    remover.join()
    assert 'configmap "held" deleted' in out
    assert time.monotonic() - started >= 0.9  # kubectl waited for the finalizer
    assert store.try_get("ConfigMap", "default", "held") is None


def test_wait_for_jsonpath_condition_and_delete(sim: SimulatedClusters,
                                                kubectl: Kubectl) -> None:
    store = sim.store("source")
    store.create("PersistentVolumeClaim", {"metadata": {"name": "p", "namespace": "default"},
                                           "spec": {"resources": {"requests": {"storage": "1Gi"}}}})
    _later(0.5, lambda: store.update_status("PersistentVolumeClaim", "default", "p",
                                            {"phase": "Bound"}))
    kubectl("wait", "pvc/p", "--for=jsonpath={.status.phase}=Bound", "--timeout=20s")
    _later(0.5, lambda: store.update_status(
        "PersistentVolumeClaim", "default", "p",
        {"phase": "Bound", "conditions": [{"type": "Ready", "status": "True"}]}))
    kubectl("wait", "pvc/p", "--for=condition=Ready", "--timeout=20s")
    _later(0.5, lambda: store.delete("PersistentVolumeClaim", "default", "p"))
    kubectl("wait", "pvc/p", "--for=delete", "--timeout=20s")
    assert store.try_get("PersistentVolumeClaim", "default", "p") is None


def test_get_watch_streams_changes(sim: SimulatedClusters, kubectl: Kubectl,
                                   tmp_path: Any) -> None:
    store = sim.store("source")
    store.create("ConfigMap", {"metadata": {"name": "w", "namespace": "default"}})
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(sim.kubeconfig_path), "--context", "source",
         "--cache-dir", str(tmp_path / "watch-cache"), "get", "configmaps", "-w",
         "--request-timeout=0", "-o", "json", "--output-watch-events"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        store.patch("ConfigMap", "default", "w", {"data": {"x": "1"}})
        store.delete("ConfigMap", "default", "w")
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    decoder, pos, seen = json.JSONDecoder(), 0, []
    while out[pos:].strip():
        event, end = decoder.raw_decode(out, pos + len(out[pos:]) - len(out[pos:].lstrip()))
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        pos = end
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")], err


def test_viewer_context_is_denied_writes(make_sim: Callable[..., SimulatedClusters],
                                         tmp_path: Any) -> None:
    from tests.conftest import run_kubectl
    seed = {"source": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "read"},
         "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "viewer-read"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "read"},
         "subjects": [{"kind": "User", "name": "viewer"}]}]}
    sim = make_sim(seed=seed)
    cache = tmp_path / "cache"
    run_kubectl(sim, cache, "get", "configmaps", context="source-viewer")
    denied = run_kubectl(sim, cache, "create", "configmap", "x", context="source-viewer",
                         check=False)
    assert denied.returncode != 0
    assert ('User "viewer" cannot create resource "configmaps" in API group "" in the '
            'namespace "default"') in denied.stderr
    # The same protobuf create by admin is decoded and stored.
    assert run_kubectl(sim, cache, "create", "configmap", "x").stdout == "configmap/x created\n"
    assert sim.store("source").get("ConfigMap", "default", "x")["metadata"]["name"] == "x"


def test_server_side_apply_and_json_patch(sim: SimulatedClusters, kubectl: Kubectl,
                                          tmp_path: Any) -> None:
    manifest = tmp_path / "dv.yaml"
    manifest.write_text(MULTI_DOC.split("---\n")[2].replace("namespace: demo", "namespace: default"))
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    kubectl("patch", "datavolume", "disk", "--type=json",
            "-p", '[{"op":"add","path":"/metadata/labels","value":{"k":"v"}}]')
    dv = sim.store("source").get("DataVolume", "default", "disk")
    assert dv["metadata"]["labels"] == {"k": "v"}
    assert dv["spec"]["source"] == {"blank": {}}
    bad = kubectl("patch", "datavolume", "disk", "--type=strategic", "-p", '{"spec":{}}',
                  check=False)
    assert bad.returncode != 0
    assert "the body of the request was in an unknown format" in bad.stderr
