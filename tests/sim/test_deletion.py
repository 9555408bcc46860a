"""Delete propagation, garbage collection and the namespace Terminating lifecycle
(apiserver-fidelity.md §8), through kubectl, the ``kubernetes`` client and lightkube."""
from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from lightkube import Client as LightClient
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace
from lightkube.types import CascadeType, PatchType

from statemachine.sim.cluster import SimulatedClusters
from tests.sim.conftest import Kubectl
from tests.polling import wait_for

MakeSim = Callable[..., SimulatedClusters]


def _owner_and_dependents(core: client.CoreV1Api, *, block: bool = False,
                          finalizer: str | None = None, ns: str = "default") -> str:
    """ConfigMap ``owner`` with dependents ``dep-1`` and ``dep-2``; returns the owner's uid."""
    uid: str = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}}).metadata.uid
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid,
           "blockOwnerDeletion": block}
    for i in (1, 2):
        meta: dict[str, Any] = {"name": f"dep-{i}", "ownerReferences": [ref]}
        if finalizer and i == 1:
            meta["finalizers"] = [finalizer]
        core.create_namespaced_config_map(ns, {"metadata": meta})
    return uid


def _exists(core: client.CoreV1Api, name: str, ns: str = "default") -> bool:
    try:
        core.read_namespaced_config_map(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_background_is_the_default_and_collects_dependents(core: client.CoreV1Api) -> None:
    _owner_and_dependents(core)
    gone = core.delete_namespaced_config_map("owner", "default")
    # 200 with the object as it was (the typed client declares V1Status, so it stays a dict).
    assert gone["metadata"]["name"] == "owner"
    assert not _exists(core, "owner")
    wait_for(lambda: not _exists(core, "dep-1") and not _exists(core, "dep-2"),
             what="dependents collected")


def test_dependents_of_a_missing_owner_are_collected(core: client.CoreV1Api) -> None:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"}
    core.create_namespaced_config_map("default", {"metadata": {"name": "stray",
                                                               "ownerReferences": [ref]}})
    wait_for(lambda: not _exists(core, "stray"), what="stray dependent collected")
    # With another owner still there, only the dangling reference goes.
    uid = core.create_namespaced_config_map("default",
                                            {"metadata": {"name": "alive"}}).metadata.uid
    alive = {"apiVersion": "v1", "kind": "ConfigMap", "name": "alive", "uid": uid}
    core.create_namespaced_config_map("default", {"metadata": {"name": "two",
                                                               "ownerReferences": [ref, alive]}})
    wait_for(lambda: [r.uid for r in core.read_namespaced_config_map(
        "two", "default").metadata.owner_references or []] == [uid], what="dangling ref removed")


def test_foreground_waits_for_blocking_dependents(core: client.CoreV1Api,
                                                  light: LightClient) -> None:
    _owner_and_dependents(core, block=True, finalizer="example.com/hold")
    light.delete(ConfigMap, "owner", cascade=CascadeType.FOREGROUND)
    owner = light.get(ConfigMap, "owner")
    assert owner.metadata.deletionTimestamp is not None
    assert "foregroundDeletion" in (owner.metadata.finalizers or [])
    # dep-2 goes; dep-1 is held by its own finalizer and blocks the owner.
    wait_for(lambda: not _exists(core, "dep-2"), what="dependent deleted first")
    held = light.get(ConfigMap, "dep-1")
    assert held.metadata.deletionTimestamp is not None
    assert _exists(core, "owner")
    light.patch(ConfigMap, "dep-1", [{"op": "remove", "path": "/metadata/finalizers"}],
                patch_type=PatchType.JSON)
    wait_for(lambda: not _exists(core, "dep-1") and not _exists(core, "owner"),
             what="owner removed after its blocking dependent")


def test_foreground_without_blocking_dependents_does_not_wait(core: client.CoreV1Api) -> None:
    _owner_and_dependents(core, block=False, finalizer="example.com/hold")
    answer = core.delete_namespaced_config_map(
        "owner", "default", body=client.V1DeleteOptions(propagation_policy="Foreground"))
    assert answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    wait_for(lambda: not _exists(core, "owner"), what="owner removed")
    assert core.read_namespaced_config_map("dep-1", "default").metadata.deletion_timestamp


def test_orphan_keeps_dependents_and_drops_their_references(kube: Kubectl,
                                                            core: client.CoreV1Api) -> None:
    _owner_and_dependents(core)
    kube("delete", "configmap", "owner", "--cascade=orphan")  # waits until the owner is gone
    assert not _exists(core, "owner")
    for name in ("dep-1", "dep-2"):
        assert core.read_namespaced_config_map(name, "default").metadata.owner_references is None


def test_legacy_orphan_dependents_and_invalid_options(core: client.CoreV1Api) -> None:
    _owner_and_dependents(core)
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("owner", "default", body=client.V1DeleteOptions(
            orphan_dependents=True, propagation_policy="Background"))
    body = json.loads(err.value.body)
    assert (body["code"], body["reason"]) == (422, "Invalid")
    assert body["message"] == ('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                               'Invalid value: "Background": orphanDependents and '
                               "deletionPropagation cannot be both set")
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("owner", "default", propagation_policy="Sideways")
    assert json.loads(err.value.body)["message"].endswith(
        'propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", '
        '"Background", "Orphan", "nil"')
    answer = core.delete_namespaced_config_map("owner", "default",
                                               body=client.V1DeleteOptions(orphan_dependents=True))
    assert answer["metadata"]["finalizers"] == ["orphan"]
    wait_for(lambda: not _exists(core, "owner"), what="owner removed")
    assert core.read_namespaced_config_map("dep-1", "default").metadata.owner_references is None


def test_job_without_policy_orphans_its_dependents(quiet: SimulatedClusters,
                                                  dynamic_client: Any,
                                                  core: client.CoreV1Api) -> None:
    jobs = dynamic_client(quiet).resources.get(api_version="batch/v1", kind="Job")
    job = jobs.create(namespace="default", body={"metadata": {"name": "j"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "c", "image": "i"}]}}}})
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job.metadata.uid}
    core.create_namespaced_config_map("default", {"metadata": {"name": "out",
                                                               "ownerReferences": [ref]}})
    # No policy: batch/v1 orphans, and says so in a Warning header.
    conn = http.client.HTTPSConnection(
        "127.0.0.1", int(quiet.url("source").rsplit(":", 1)[1]),
        context=ssl.create_default_context(cafile=str(quiet.ca_path)))
    conn.request("DELETE", "/apis/batch/v1/namespaces/default/jobs/j",
                 headers={"Authorization": f"Bearer {quiet.token('source')}"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    assert resp.getheader("Warning") == (
        '299 - "child pods are preserved by default when jobs are deleted; set '
        'propagationPolicy=Background to remove them or set propagationPolicy=Orphan to '
        'suppress this warning"')
    wait_for(lambda: not quiet.store("source").try_get("Job", "default", "j"), what="job gone")
    assert core.read_namespaced_config_map("out", "default").metadata.owner_references is None


def test_namespace_terminating_lifecycle(core: client.CoreV1Api, light: LightClient,
                                         kube: Kubectl) -> None:
    light.create(Namespace(metadata=ObjectMeta(name="doomed")))
    light.create(ConfigMap(metadata=ObjectMeta(name="plain")), namespace="doomed")
    light.create(ConfigMap(metadata=ObjectMeta(name="held", finalizers=["example.com/hold"])),
                 namespace="doomed")
    kube("delete", "namespace", "doomed", "--wait=false")
    ns = light.get(Namespace, "doomed")
    assert ns.status.phase == "Terminating" and ns.metadata.deletionTimestamp is not None
    assert ns.spec.finalizers == ["kubernetes"]
    # Creates are refused while it terminates; updates and deletes still work.
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    body = json.loads(err.value.body)
    assert (body["code"], body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('configmaps "late" is forbidden: unable to create new content in '
                               "namespace doomed because it is being terminated")
    assert body["details"]["causes"] == [{"reason": "NamespaceTerminating",
                                          "message": "namespace doomed is being terminated",
                                          "field": "metadata.namespace"}]
    with pytest.raises(ApiError) as lerr:
        light.create(ConfigMap(metadata=ObjectMeta(generateName="late-")), namespace="doomed")
    assert lerr.value.status.message == ("configmaps is forbidden: unable to create new content "
                                         "in namespace doomed because it is being terminated")
    # The content goes, except what a finalizer holds; the namespace waits and says why.
    wait_for(lambda: not _exists(core, "plain", "doomed"), what="content deleted")

    def conditions() -> dict[str, Any]:
        got = light.get(Namespace, "doomed").status.conditions or []
        return {c.type: c for c in got}
    conds = wait_for(lambda: conditions().get("NamespaceFinalizersRemaining") and conditions(),
                     what="namespace conditions")
    assert [c for c in conds] == [
        "NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
        "NamespaceDeletionContentFailure", "NamespaceContentRemaining",
        "NamespaceFinalizersRemaining"]
    remaining = conds["NamespaceContentRemaining"]
    assert (remaining.status, remaining.reason, remaining.message) == (
        "True", "SomeResourcesRemain",
        "Some resources are remaining: configmaps. has 1 resource instances")
    held = conds["NamespaceFinalizersRemaining"]
    assert (held.status, held.reason, held.message) == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances")
    light.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, namespace="doomed",
                patch_type=PatchType.MERGE)
    wait_for(lambda: "doomed" not in kube("get", "namespaces", "-o", "name").stdout,
             what="namespace removed")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "after"}})
    assert (err.value.status, json.loads(err.value.body)["message"]) == (
        404, 'namespaces "doomed" not found')


def test_system_namespaces_cannot_be_deleted(kube: Kubectl, light: LightClient) -> None:
    proc = kube("delete", "namespace", "default", check=False)
    assert proc.returncode != 0
    assert ('Error from server (Forbidden): namespaces "default" is forbidden: this namespace '
            "may not be deleted") in proc.stderr
    with pytest.raises(ApiError) as err:
        light.delete(Namespace, "kube-system")
    assert (err.value.status.code, err.value.status.reason) == (403, "Forbidden")


def test_finalize_subresource_releases_a_stuck_namespace(kube: Kubectl,
                                                         light: LightClient) -> None:
    light.create(Namespace(metadata=ObjectMeta(name="stuck")))
    light.create(ConfigMap(metadata=ObjectMeta(name="held", finalizers=["example.com/hold"])),
                 namespace="stuck")
    light.delete(Namespace, "stuck")
    wait_for(lambda: (light.get(Namespace, "stuck").status.conditions or [None])[-1],
             what="namespace controller pass")
    assert light.get(Namespace, "stuck").status.phase == "Terminating"
    # What an admin types to force a stuck namespace out: the finalize subresource.
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stuck"},
            "spec": {"finalizers": []}}
    kube("replace", "--raw", "/api/v1/namespaces/stuck/finalize", "-f", "-",
         input=json.dumps(body))
    wait_for(lambda: "stuck" not in kube("get", "namespaces", "-o", "name").stdout,
             what="namespace removed")


def test_cluster_scoped_dependent_of_a_namespaced_kind_is_kept(core: client.CoreV1Api) -> None:
    to_cm = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "no-such-uid"}
    core.create_namespace({"metadata": {"name": "odd", "ownerReferences": [to_cm]}})
    to_ns = {"apiVersion": "v1", "kind": "Namespace", "name": "gone", "uid": "no-such-ns-uid"}
    core.create_namespace({"metadata": {"name": "collected", "ownerReferences": [to_ns]}})
    # The collector works in order: once the second is gone, the first has been looked at.
    def collected() -> bool:
        try:
            return core.read_namespace("collected").status.phase == "Terminating"
        except ApiException as exc:
            return exc.status == 404
    wait_for(collected, what="dangling namespace collected")
    assert core.read_namespace("odd").metadata.deletion_timestamp is None
