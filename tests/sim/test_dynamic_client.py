"""The ``kubernetes`` DynamicClient against the simulated clusters: CRUD, selectors, patches,
watches and the mapping of error answers to its exception classes."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic import exceptions as dexc

from statemachine.sim.cluster import SimulatedClusters

MakeSim = Callable[..., SimulatedClusters]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _dv(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "labels": labels},
            "spec": {"source": {"blank": {}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def _it(name: str) -> dict[str, Any]:
    """A custom resource whose spec may change (a DataVolume's is frozen by CDI's webhook)."""
    return {"apiVersion": "instancetype.kubevirt.io/v1beta1",
            "kind": "VirtualMachineInstancetype", "metadata": {"name": name},
            "spec": {"cpu": {"guest": 1}, "memory": {"guest": "1Gi"}}}


IT = {"api_version": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineInstancetype"}


@pytest.fixture
def quiet(make_sim: MakeSim) -> SimulatedClusters:
    """Clusters without controllers: the objects stay exactly as the test writes them."""
    return make_sim(controllers=False)


def _status(exc: ApiException) -> dict[str, Any]:
    """The metav1.Status body of an error answer."""
    body: dict[str, Any] = json.loads(exc.body)
    assert body["kind"] == "Status" and body["code"] == exc.status
    return body


def _cm(dyn: DynamicClient) -> Any:
    return dyn.resources.get(api_version="v1", kind="ConfigMap")


def test_crud_and_server_set_fields(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    dyn = dynamic_client(quiet)
    dvs = dyn.resources.get(**IT)
    created = dvs.create(body=_it("d1"), namespace="default")
    meta = created.metadata
    assert meta.uid and meta.creationTimestamp.endswith("Z") and meta.generation == 1
    assert int(meta.resourceVersion) == quiet.store("source").resource_version
    assert created.kind == "VirtualMachineInstancetype" and meta.namespace == "default"
    got = dvs.get(name="d1", namespace="default")
    assert got.metadata.uid == meta.uid
    body = got.to_dict()
    body["spec"]["schedulerName"] = "other"
    replaced = dvs.replace(body=body, namespace="default")
    assert replaced.metadata.generation == 2
    assert int(replaced.metadata.resourceVersion) > int(meta.resourceVersion)
    deleted = dvs.delete(name="d1", namespace="default")
    assert deleted.metadata.name == "d1"
    with pytest.raises(dexc.NotFoundError) as err:
        dvs.get(name="d1", namespace="default")
    assert err.value.status == 404
    status = _status(err.value)
    assert status["message"] == 'virtualmachineinstancetypes.instancetype.kubevirt.io "d1" not found'
    assert status["reason"] == "NotFound"
    assert status["details"] == {"name": "d1", "group": "instancetype.kubevirt.io",
                                 "kind": "virtualmachineinstancetypes"}


def test_generate_name_and_list_kind(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    cms = _cm(dynamic_client(quiet))
    a = cms.create(body={"metadata": {"generateName": "job-"}}, namespace="default")
    assert a.metadata.name.startswith("job-") and len(a.metadata.name) > 4
    listed = cms.get(namespace="default")
    assert listed.kind == "ConfigMapList"
    assert [i.metadata.name for i in listed.items] == [a.metadata.name]
    assert listed.metadata.resourceVersion == str(quiet.store("source").resource_version)


def test_label_and_field_selectors(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    dvs = dynamic_client(quiet).resources.get(api_version="cdi.kubevirt.io/v1beta1",
                                              kind="DataVolume")
    for name, tier in (("a", "gold"), ("b", "silver"), ("c", "")):
        dvs.create(body=_dv(name, **({"tier": tier} if tier else {})), namespace="default")

    def names(**kw: str) -> list[str]:
        return [i.metadata.name for i in dvs.get(namespace="default", **kw).items]

    assert names(label_selector="tier=gold") == ["a"]
    assert names(label_selector="tier==gold") == ["a"]
    assert names(label_selector="tier!=gold") == ["b", "c"]
    assert names(label_selector="tier in (gold,silver)") == ["a", "b"]
    assert names(label_selector="tier notin (gold)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert names(field_selector="metadata.namespace=other") == []


def test_patch_types(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    dyn = dynamic_client(quiet)
    dvs = dyn.resources.get(**IT)
    dvs.create(body=_it("p"), namespace="default")
    merged = dvs.patch(name="p", namespace="default", content_type=MERGE,
                       body={"metadata": {"labels": {"x": "1"}}, "spec": {"schedulerName": "s"}})
    assert merged.metadata.labels.x == "1" and merged.spec.schedulerName == "s"
    removed = dvs.patch(name="p", namespace="default", content_type=MERGE,
                        body={"spec": {"schedulerName": None}})
    assert "schedulerName" not in removed.to_dict()["spec"]
    jp = dvs.patch(name="p", namespace="default", content_type=JSON_PATCH,
                   body=[{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}},
                         {"op": "replace", "path": "/metadata/labels/x", "value": "2"}])
    assert jp.metadata.annotations.a == "b" and jp.metadata.labels.x == "2"
    with pytest.raises(dexc.UnprocessibleEntityError):
        dvs.patch(name="p", namespace="default", content_type=JSON_PATCH,
                  body=[{"op": "test", "path": "/metadata/labels/x", "value": "nope"}])
    with pytest.raises(ApiException) as err:  # DynamicClient's default: strategic merge
        dvs.patch(name="p", namespace="default", body={"spec": {"schedulerName": "t"}})
    assert err.value.status == 415 and _status(err.value)["reason"] == "UnsupportedMediaType"
    # built-in kinds accept strategic merge (treated as a merge)
    cms = _cm(dyn)
    cms.create(body={"metadata": {"name": "c"}, "data": {"a": "1"}}, namespace="default")
    assert cms.patch(name="c", namespace="default", body={"data": {"b": "2"}}).data.b == "2"
    # server-side apply creates, then merges
    applied = dvs.server_side_apply(body=_it("ssa"), namespace="default",
                                    field_manager="smrun", name="ssa")
    assert applied.metadata.name == "ssa"
    again = dvs.server_side_apply(body={**_it("ssa"), "metadata": {"name": "ssa",
                                                                   "labels": {"k": "v"}}},
                                  namespace="default", field_manager="smrun", name="ssa")
    assert again.metadata.labels.k == "v"


def test_status_subresource_rules(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    dvs = dynamic_client(quiet).resources.get(api_version="cdi.kubevirt.io/v1beta1",
                                              kind="DataVolume")
    body = _dv("s")
    body["status"] = {"phase": "Succeeded"}
    created = dvs.create(body=body, namespace="default")
    assert "status" not in created.to_dict()  # status of a create body is dropped
    st = dvs.status.patch(name="s", namespace="default", content_type=MERGE,
                          body={"status": {"phase": "ImportInProgress"},
                                "spec": {"preallocation": True}})
    assert st.status.phase == "ImportInProgress"
    assert "preallocation" not in st.to_dict()["spec"]  # /status writes only status
    assert st.metadata.generation == 1
    main = dvs.patch(name="s", namespace="default", content_type=MERGE,
                     body={"status": {"phase": "Hacked"}, "metadata": {"labels": {"a": "b"}}})
    assert main.status.phase == "ImportInProgress"  # the main resource keeps the old status
    assert main.metadata.generation == 1  # metadata-only change
    rv = main.metadata.resourceVersion
    same = dvs.patch(name="s", namespace="default", content_type=MERGE,
                     body={"metadata": {"labels": {"a": "b"}}})
    assert same.metadata.resourceVersion == rv  # no-op write: no new resourceVersion


def test_conflicts(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    cms = _cm(dynamic_client(quiet))
    first = cms.create(body={"metadata": {"name": "c"}}, namespace="default")
    with pytest.raises(dexc.ConflictError) as exists:
        cms.create(body={"metadata": {"name": "c"}}, namespace="default")
    assert _status(exists.value)["reason"] == "AlreadyExists"
    stale = first.to_dict()
    cms.patch(name="c", namespace="default", body={"data": {"x": "1"}}, content_type=MERGE)
    stale["data"] = {"y": "2"}
    with pytest.raises(dexc.ConflictError) as err:
        cms.replace(body=stale, namespace="default")
    assert _status(err.value)["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; please '
        "apply your changes to the latest version and try again")


def test_finalizers_and_deletion_timestamp(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    cms = _cm(dynamic_client(quiet))
    cms.create(body={"metadata": {"name": "f", "finalizers": ["smrun.io/hold"]}},
               namespace="default")
    first = cms.delete(name="f", namespace="default")
    assert first.metadata.deletionTimestamp
    assert cms.get(name="f", namespace="default").metadata.deletionTimestamp
    cms.patch(name="f", namespace="default", content_type=MERGE,
              body={"metadata": {"finalizers": None}})
    with pytest.raises(dexc.NotFoundError):
        cms.get(name="f", namespace="default")


def test_watch_events_and_timeout(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    cms = _cm(dynamic_client(quiet))
    listed = cms.get(namespace="default")
    store = quiet.store("source")

    def writer() -> None:
        time.sleep(0.3)
        store.create("ConfigMap", {"metadata": {"name": "w", "namespace": "default"}})
        store.patch("ConfigMap", "default", "w", {"data": {"a": "1"}})
        store.create("ConfigMap", {"metadata": {"name": "other", "namespace": "default"}})
        store.delete("ConfigMap", "default", "w")

    threading.Thread(target=writer, daemon=True).start()
    started = time.monotonic()
    seen = [(e["type"], e["raw_object"]["metadata"]["name"])
            for e in cms.watch(namespace="default", name="w", timeout=2,
                               resource_version=listed.metadata.resourceVersion)]
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert 1.5 < time.monotonic() - started < 5  # the server closed the stream at the timeout


def test_watch_from_old_resource_version_gets_410(make_sim: MakeSim,
                                                  dynamic_client: Any) -> None:
    sim = make_sim(controllers=False, history=5)
    cms = _cm(dynamic_client(sim))
    for i in range(20):
        sim.store("source").create("ConfigMap", {"metadata": {"name": f"c{i}",
                                                              "namespace": "default"}})
    with pytest.raises(ApiException) as err:
        list(cms.watch(namespace="default", resource_version="1", timeout=2))
    assert err.value.status == 410
    assert "too old resource version" in str(err.value.reason)


def test_401_and_403(make_sim: MakeSim, dynamic_client: Any, tmp_path: Any) -> None:
    seed = {"source": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "read-cm", "namespace": "default"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "viewer", "namespace": "default"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
         "subjects": [{"kind": "User", "name": "viewer"}]}]}
    sim = make_sim(seed=seed, controllers=False)
    viewer = _cm(dynamic_client(sim, "source", "viewer"))
    assert viewer.get(namespace="default").kind == "ConfigMapList"
    with pytest.raises(dexc.ForbiddenError) as denied:
        viewer.create(body={"metadata": {"name": "x"}}, namespace="default")
    # as upstream: a create names no object (the name is not in the URL)
    assert _status(denied.value)["message"] == (
        'configmaps is forbidden: User "viewer" cannot create resource "configmaps" in API '
        'group "" in the namespace "default"')
    with pytest.raises(dexc.ForbiddenError):
        viewer.get(namespace="kube-system")  # the Role binds only in default

    cfg = client.Configuration()
    cfg.host = sim.url("source")
    cfg.ssl_ca_cert = str(sim.ca_path)
    cfg.api_key = {"authorization": "not-a-token"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with pytest.raises(dexc.UnauthorizedError):
        DynamicClient(client.ApiClient(cfg), cache_file=str(tmp_path / "anon.json"))
