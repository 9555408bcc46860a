"""Defaults a real kube-apiserver gives built-in objects (``coredefaults.py``), through the
``kubernetes`` client: a PersistentVolumeClaim's ``volumeMode`` and ``status.phase`` (decoding)
and its ``storageClassName`` (the DefaultStorageClass admission plugin, on create only), a
Secret's ``type``, a StorageClass's reclaim policy and binding mode."""
from __future__ import annotations

import time
from typing import Any

from kubernetes import client, config

from statemachine.sim.cluster import SimulatedClusters

DEFAULT = "storageclass.kubernetes.io/is-default-class"


def _pvc(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def _storage(quiet: SimulatedClusters) -> client.StorageV1Api:
    api = config.new_client_from_config(config_file=str(quiet.kubeconfig_path), context="source")
    return client.StorageV1Api(api)


def test_pvc_create_gets_the_default_class_volume_mode_and_pending(
        core: client.CoreV1Api) -> None:
    pvc = core.create_namespaced_persistent_volume_claim("default", _pvc("p"))
    assert pvc.spec.storage_class_name == "standard"
    assert pvc.spec.volume_mode == "Filesystem"
    assert pvc.status.phase == "Pending"
    stored = core.read_namespaced_persistent_volume_claim("p", "default")
    assert (stored.spec.storage_class_name, stored.spec.volume_mode, stored.status.phase) == (
        "standard", "Filesystem", "Pending")
    # A status sent on create is dropped (PrepareForCreate), then decoding's phase applies.
    body = _pvc("q")
    body["status"] = {"phase": "Bound"}
    assert core.create_namespaced_persistent_volume_claim("default", body).status.phase == \
        "Pending"
    # A dry run answers the admitted object (class and volume mode), never decoded: no phase.
    dry = core.create_namespaced_persistent_volume_claim("default", _pvc("d"), dry_run="All")
    assert dry.spec.storage_class_name == "standard" and dry.status is None


def test_a_class_the_claim_names_is_kept(core: client.CoreV1Api) -> None:
    assert core.create_namespaced_persistent_volume_claim(
        "default", _pvc("empty", storageClassName="")).spec.storage_class_name == ""
    assert core.create_namespaced_persistent_volume_claim(
        "default", _pvc("wffc", storageClassName="local-wffc")).spec.storage_class_name == \
        "local-wffc"
    block = core.create_namespaced_persistent_volume_claim(
        "default", _pvc("block", volumeMode="Block"))
    assert block.spec.volume_mode == "Block"
    beta = _pvc("beta")
    beta["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "local-wffc"}
    assert core.create_namespaced_persistent_volume_claim(
        "default", beta).spec.storage_class_name is None


def test_the_newest_default_class_wins_and_none_leaves_the_claim_unset(
        quiet: SimulatedClusters, core: client.CoreV1Api) -> None:
    storage = _storage(quiet)
    # Created after `standard`, or in the same second and first by name: chosen either way.
    storage.create_storage_class({"metadata": {"name": "aaa-fast", "annotations": {
        DEFAULT: "true"}}, "provisioner": "sim.smrun.io/hostpath"})
    assert core.create_namespaced_persistent_volume_claim(
        "default", _pvc("two")).spec.storage_class_name == "aaa-fast"
    for name in ("aaa-fast", "standard"):
        storage.patch_storage_class(name, {"metadata": {"annotations": {DEFAULT: "false"}}})
    unset = core.create_namespaced_persistent_volume_claim("default", _pvc("none"))
    assert unset.spec.storage_class_name is None
    # Only a create is defaulted: a later update leaves the claim without a class.
    storage.patch_storage_class("standard", {"metadata": {"annotations": {DEFAULT: "true"}}})
    time.sleep(0.01)
    patched = core.patch_namespaced_persistent_volume_claim(
        "none", "default", {"metadata": {"labels": {"a": "b"}}})
    assert patched.spec.storage_class_name is None


def test_an_update_without_volume_mode_is_defaulted_not_refused(core: client.CoreV1Api) -> None:
    pvc = core.create_namespaced_persistent_volume_claim("default", _pvc("p")).to_dict()
    body = core.api_client.sanitize_for_serialization(
        core.read_namespaced_persistent_volume_claim("p", "default"))
    del body["spec"]["volumeMode"]
    del body["metadata"]["managedFields"]  # the client rewrites their times ("+00:00")
    replaced = core.replace_namespaced_persistent_volume_claim("p", "default", body)
    assert replaced.spec.volume_mode == "Filesystem"
    assert replaced.metadata.resource_version == pvc["metadata"]["resource_version"]  # no-op


def test_secret_type_and_storage_class_defaults(quiet: SimulatedClusters,
                                                core: client.CoreV1Api) -> None:
    secret = core.create_namespaced_secret("default", {"metadata": {"name": "s"},
                                                       "stringData": {"k": "v"}})
    assert secret.type == "Opaque"
    sc = _storage(quiet).create_storage_class({"metadata": {"name": "plain"},
                                               "provisioner": "example.com/x"})
    assert (sc.reclaim_policy, sc.volume_binding_mode) == ("Delete", "Immediate")


def test_service_defaults_and_allocation(core: client.CoreV1Api) -> None:
    svc = core.create_namespaced_service("default", {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    spec = svc.spec
    assert (spec.type, spec.session_affinity, spec.internal_traffic_policy) == (
        "ClusterIP", "None", "Cluster")
    assert (spec.ports[0].protocol, spec.ports[0].target_port) == ("TCP", 80)
    assert spec.cluster_ip.startswith("10.96.") and spec.cluster_ips == [spec.cluster_ip]
    assert (spec.ip_families, spec.ip_family_policy) == (["IPv4"], "SingleStack")
    # Go writes the empty status structs, so clients can read status.loadBalancer.ingress.
    assert svc.status.load_balancer is not None and svc.status.load_balancer.ingress is None
    other = core.create_namespaced_service("default", {"metadata": {"name": "api"}, "spec": {
        "type": "NodePort", "ports": [{"port": 443, "targetPort": "https"}]}})
    assert other.spec.cluster_ip != spec.cluster_ip
    assert other.spec.external_traffic_policy == "Cluster"
    assert 30000 <= other.spec.ports[0].node_port <= 32767
    assert other.spec.ports[0].target_port == "https"
    headless = core.create_namespaced_service("default", {"metadata": {"name": "h"}, "spec": {
        "clusterIP": "None", "selector": {"app": "web"}}})
    assert headless.spec.cluster_ips == ["None"]
    ext = core.create_namespaced_service("default", {"metadata": {"name": "x"}, "spec": {
        "type": "ExternalName", "externalName": "example.com"}})
    assert ext.spec.cluster_ip is None and ext.spec.ip_families is None


def test_a_service_update_keeps_its_allocations(core: client.CoreV1Api) -> None:
    svc = core.create_namespaced_service("default", {"metadata": {"name": "np"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80}]}})
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "np", "resourceVersion": svc.metadata.resource_version},
            "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"a": "b"}}}
    replaced = core.replace_namespaced_service("np", "default", body)
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip
    assert replaced.spec.ports[0].node_port == svc.spec.ports[0].node_port
    assert replaced.spec.ip_families == ["IPv4"]


def test_secret_string_data_is_folded_into_data(quiet: SimulatedClusters,
                                                core: client.CoreV1Api) -> None:
    secret = core.create_namespaced_secret("default", {
        "metadata": {"name": "folded"}, "data": {"a": "YQ==", "b": "Yg=="},
        "stringData": {"b": "two", "c": "three"}})
    assert secret.string_data is None
    assert secret.data == {"a": "YQ==", "b": "dHdv", "c": "dGhyZWU="}
    stored = quiet.store("source").get("Secret", "default", "folded")
    assert "stringData" not in stored and stored["data"]["c"] == "dGhyZWU="
