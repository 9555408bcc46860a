"""Server-side apply with field ownership (managedFields, conflicts, force, removal of dropped
fields), through kubectl, the ``kubernetes`` client and lightkube against the simulator over
HTTPS (apiserver-fidelity.md §5)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from statemachine.sim.cluster import SimulatedClusters

lightkube = pytest.importorskip("lightkube")
from lightkube import ApiError, Client, KubeConfig  # noqa: E402
from lightkube.resources.core_v1 import ConfigMap  # noqa: E402

Kubectl = Callable[..., CompletedProcess[str]]
APPLY = "application/apply-patch+yaml"


@pytest.fixture
def lk(sim: SimulatedClusters) -> Iterator[Client]:
    config = KubeConfig.from_file(str(sim.kubeconfig_path)).get(context_name="source")
    c = Client(config=config, namespace="default")
    yield c
    c._client._client.close()  # the httpx client (lightkube has no public close)


@pytest.fixture
def core(sim: SimulatedClusters) -> k8s.CoreV1Api:
    api = k8s_config.new_client_from_config(config_file=str(sim.kubeconfig_path),
                                            context="source")
    return k8s.CoreV1Api(api)


def _cm(name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", **meta}, "data": data}


def _entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def _get_cm(core: k8s.CoreV1Api, name: str) -> dict[str, Any]:
    resp = core.read_namespaced_config_map(name, "default", _preload_content=False)
    return json.loads(resp.data)  # type: ignore[no-any-return]


@pytest.fixture
def dyn(sim: SimulatedClusters, dynamic_client: Callable[..., Any]) -> Any:
    return dynamic_client(sim)


def _patch_raw(dyn: Any, path: str, body: Any, content_type: str = APPLY,
               **query: str) -> dict[str, Any]:
    """A PATCH with any content type and query through the ``kubernetes`` client."""
    resp = dyn.request("patch", path, body=body, content_type=content_type,
                       query_params=list(query.items()), serialize=False)
    return json.loads(resp.data)  # type: ignore[no-any-return]


def _cm_path(name: str) -> str:
    return f"/api/v1/namespaces/default/configmaps/{name}"


def test_create_records_an_update_entry_in_fieldsv1(kubectl: Kubectl, core: k8s.CoreV1Api,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(_cm("shape", {"a": "1"}, labels={"app": "x"})))
    kubectl("create", "-f", str(path))
    obj = _get_cm(core, "shape")
    [entry] = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create" and entry["operation"] == "Update"
    assert entry["apiVersion"] == "v1" and entry["fieldsType"] == "FieldsV1"
    assert entry["time"].endswith("Z") and len(entry["time"]) == 20
    assert "subresource" not in entry
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:a": {}},
                                 "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    # Without ?fieldManager the manager is the User-Agent before its first "/".
    core.patch_namespaced_config_map("shape", "default", {"data": {"b": "2"}})
    entries = _entries(_get_cm(core, "shape"))
    assert entries[("OpenAPI-Generator", "Update")]["fieldsV1"] == {"f:data": {"f:b": {}}}
    # kubectl get -o yaml hides them, --show-managed-fields shows them (as on a real cluster)
    assert "managedFields" not in kubectl("get", "cm", "shape", "-o", "yaml").stdout
    shown = kubectl("get", "cm", "shape", "-o", "yaml", "--show-managed-fields").stdout
    assert "manager: kubectl-create" in shown


def test_status_write_is_recorded_with_its_subresource(
        make_sim: Callable[..., SimulatedClusters], dynamic_client: Callable[..., Any]) -> None:
    quiet = make_sim(controllers=False)  # no CDI controller rewriting the PVC's status
    dyn = dynamic_client(quiet)
    quiet.store("source").create("PersistentVolumeClaim", {
        "metadata": {"name": "claim", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}, manager="kubectl-create")
    pvc = _patch_raw(dyn, "/api/v1/namespaces/default/persistentvolumeclaims/claim/status",
                     {"status": {"conditions": [{"type": "Resizing", "status": "True"}]}},
                     "application/merge-patch+json", fieldManager="tester")
    entry = _entries(pvc)[("tester", "Update")]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:conditions": {
        ".": {}, 'k:{"type":"Resizing"}': {".": {}, "f:status": {}, "f:type": {}}}}}
    assert "subresource" not in _entries(pvc)[("kubectl-create", "Update")]


def test_two_managers_conflict_and_force_moves_ownership(lk: Client) -> None:
    lk.apply(ConfigMap.from_dict(_cm("shared", {"size": "1", "color": "red"})),
             field_manager="alice")
    with pytest.raises(ApiError) as err:
        lk.apply(ConfigMap.from_dict(_cm("shared", {"size": "2"})), field_manager="bob")
    status = err.value.status
    assert status.code == 409 and status.reason == "Conflict"
    assert status.message == 'Apply failed with 1 conflict: conflict with "alice": .data.size'
    assert [(c.field, c.message, c.reason) for c in status.details.causes] == [
        (".data.size", 'conflict with "alice"', "FieldManagerConflict")]
    # The same value is no conflict: both own it.
    lk.apply(ConfigMap.from_dict(_cm("shared", {"color": "red"})), field_manager="bob")
    forced = lk.apply(ConfigMap.from_dict(_cm("shared", {"size": "2", "color": "red"})),
                      field_manager="bob", force=True)
    assert forced.data == {"size": "2", "color": "red"}
    fields = {(e.manager, e.operation): e.fieldsV1 for e in forced.metadata.managedFields}
    assert fields[("alice", "Apply")] == {"f:data": {"f:color": {}}}
    assert fields[("bob", "Apply")] == {"f:data": {"f:color": {}, "f:size": {}}}
    # alice no longer owns size: applying her old value now conflicts with bob
    with pytest.raises(ApiError) as again:
        lk.apply(ConfigMap.from_dict(_cm("shared", {"size": "1", "color": "red"})),
                 field_manager="alice")
    assert again.value.status.message == \
        'Apply failed with 1 conflict: conflict with "bob": .data.size'


def test_conflict_with_several_fields_and_an_update_manager(core: k8s.CoreV1Api,
                                                            dyn: Any) -> None:
    core.create_namespaced_config_map("default", _cm("multi", {"a": "1", "b": "1"}),
                                      field_manager="editor")
    created = _get_cm(core, "multi")
    when = _entries(created)[("editor", "Update")]["time"]
    with pytest.raises(ApiException) as err:
        _patch_raw(dyn, _cm_path("multi"), _cm("multi", {"a": "2", "b": "2"}),
                   fieldManager="applier")
    body = json.loads(err.value.body)
    assert err.value.status == 409 and body["reason"] == "Conflict"
    who = f'"editor" using v1 at {when}'
    assert body["message"] == (f"Apply failed with 2 conflicts: conflicts with {who}:\n"
                               "- .data.a\n- .data.b")
    assert body["details"] == {"causes": [
        {"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": f}
        for f in (".data.a", ".data.b")]}


def test_a_dropped_field_is_removed_unless_another_manager_owns_it(lk: Client) -> None:
    lk.apply(ConfigMap.from_dict(_cm("drop", {"a": "1", "b": "2", "c": "3"},
                                     labels={"team": "x", "tier": "y"})),
             field_manager="alice")
    lk.apply(ConfigMap.from_dict(_cm("drop", {"c": "3"})), field_manager="bob")
    after = lk.apply(ConfigMap.from_dict(_cm("drop", {"a": "1"}, labels={"team": "x"})),
                     field_manager="alice")
    assert after.data == {"a": "1", "c": "3"}  # b removed, c kept for bob
    assert after.metadata.labels == {"team": "x"}
    config = _cm("drop", {})
    del config["data"]
    gone = lk.apply(ConfigMap.from_dict(config), field_manager="bob")
    assert gone.data == {"a": "1"}
    managers = {e.manager for e in gone.metadata.managedFields}
    assert managers == {"alice"}  # bob's entry is empty, so it is gone


def test_apply_without_field_manager_is_refused(dyn: Any, core: k8s.CoreV1Api) -> None:
    # lightkube and the typed client refuse this before sending; a raw request reaches the
    # server, which answers as kube-apiserver does (apiserver-fidelity.md §5.1: 422 Invalid).
    with pytest.raises(ApiException) as err:
        _patch_raw(dyn, _cm_path("nomgr"), _cm("nomgr", {"a": "1"}))
    status = json.loads(err.value.body)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                 'Required value: is required for apply patch')
    assert status["details"] == {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
        {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
         "field": "fieldManager"}]}
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("nomgr", "default")
    assert gone.value.status == 404  # nothing was created


def test_force_on_a_merge_patch_is_refused(core: k8s.CoreV1Api, dyn: Any) -> None:
    core.create_namespaced_config_map("default", _cm("forced", {"a": "1"}))
    with pytest.raises(ApiException) as err:
        _patch_raw(dyn, _cm_path("forced"), {"data": {"a": "2"}},
                   "application/merge-patch+json", force="true")
    body = json.loads(err.value.body)
    assert err.value.status == 422
    assert body["message"] == ('PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: '
                               'may not be specified for non-apply patch')


def test_kubectl_server_side_apply_conflicts_and_force_conflicts(kubectl: Kubectl,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(_cm("ssa", {"replicas": "1"})))
    kubectl("apply", "--server-side", "-f", str(path))
    kubectl("patch", "cm", "ssa", "--type=merge", "-p", '{"data":{"replicas":"5"}}')
    path.write_text(yaml.safe_dump(_cm("ssa", {"replicas": "2"})))
    refused = kubectl("apply", "--server-side", "-f", str(path), check=False)
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl-patch" using v1' in refused.stderr
    assert ".data.replicas" in refused.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    obj = json.loads(kubectl("get", "cm", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert obj["data"] == {"replicas": "2"}
    entries = _entries(obj)
    assert entries[("kubectl", "Apply")]["fieldsV1"] == {"f:data": {"f:replicas": {}}}
    assert ("kubectl-patch", "Update") not in entries  # it owned nothing else


def test_apply_creates_a_missing_object_with_an_apply_entry(dyn: Any) -> None:
    made = _patch_raw(dyn, _cm_path("fresh"), _cm("fresh", {"k": "v"}, labels={"a": "b"}),
                      fieldManager="creator")
    assert made["data"] == {"k": "v"}
    [entry] = made["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("creator", "Apply")
    assert entry["fieldsV1"] == {"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}


def test_apply_merges_associative_lists_by_key(lk: Client) -> None:
    from lightkube.resources.core_v1 import Pod

    def pod(*containers: dict[str, Any]) -> Any:
        return Pod.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "web", "namespace": "default"},
                              "spec": {"containers": list(containers)}})

    lk.apply(pod({"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]}),
             field_manager="team-app")
    both = lk.apply(pod({"name": "sidecar", "image": "proxy:1"}), field_manager="team-mesh")
    assert [c.name for c in both.spec.containers] == ["app", "sidecar"]
    fields = {e.manager: e.fieldsV1 for e in both.metadata.managedFields}
    assert fields["team-app"] == {"f:spec": {"f:containers": {'k:{"name":"app"}': {
        ".": {}, "f:image": {}, "f:name": {},
        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
    }}}}
    with pytest.raises(ApiError) as err:
        lk.apply(pod({"name": "sidecar", "image": "proxy:2"}), field_manager="team-app")
    assert err.value.status.details.causes[0].field == '.spec.containers[name="sidecar"].image'
    # team-app stops applying "app": the container goes (nobody else owns it)
    gone = lk.apply(pod({"name": "sidecar", "image": "proxy:1"}), field_manager="team-app")
    assert [c.name for c in gone.spec.containers] == ["sidecar"]


RACK_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "racks.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "racks", "singular": "rack", "kind": "Rack"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "slots": {"type": "array", "x-kubernetes-list-type": "map",
                                             "x-kubernetes-list-map-keys": ["name"],
                                             "items": {"type": "object", "required": ["name"],
                                                       "properties": {
                                                           "name": {"type": "string"},
                                                           "size": {"type": "integer"}}}},
                                   "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                            "items": {"type": "string"}},
                                   "hosts": {"type": "array",
                                             "items": {"type": "string"}}}}}}}}]}}


def test_custom_resource_lists_follow_the_crd_markers(kubectl: Kubectl, tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(yaml.safe_dump(RACK_CRD))
    kubectl("apply", "--server-side", "-f", str(crd))
    kubectl("wait", "--for=condition=Established", "crd/racks.example.com", "--timeout=5s")

    def apply(manager: str, spec: dict[str, Any], *extra: str) -> CompletedProcess[str]:
        path = tmp_path / f"{manager}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "example.com/v1", "kind": "Rack",
                                        "metadata": {"name": "r1", "namespace": "default"},
                                        "spec": spec}))
        return kubectl("apply", "--server-side", f"--field-manager={manager}", "-f",
                       str(path), *extra, check=False)

    assert apply("a", {"slots": [{"name": "s1", "size": 1}], "tags": ["red"],
                       "hosts": ["h1"]}).returncode == 0
    # map list items and set values of two managers live side by side
    assert apply("b", {"slots": [{"name": "s2", "size": 2}], "tags": ["blue"]}).returncode == 0
    rack = json.loads(kubectl("get", "rack", "r1", "-o", "json").stdout)
    assert rack["spec"]["slots"] == [{"name": "s1", "size": 1}, {"name": "s2", "size": 2}]
    assert rack["spec"]["tags"] == ["red", "blue"]
    # another manager's item field, and an atomic list, conflict
    out = apply("b", {"slots": [{"name": "s1", "size": 9}], "hosts": ["h2"]})
    assert out.returncode != 0
    assert 'Apply failed with 2 conflicts: conflicts with "a":' in out.stderr
    assert '- .spec.hosts' in out.stderr and '- .spec.slots[name="s1"].size' in out.stderr
    assert apply("b", {"slots": [{"name": "s1", "size": 9}], "hosts": ["h2"]},
                 "--force-conflicts").returncode == 0
    rack = json.loads(kubectl("get", "rack", "r1", "-o", "json",
                              "--show-managed-fields").stdout)
    # b no longer applies s2 or blue: they are gone; s1 (still a's item) has b's size
    assert rack["spec"] == {"slots": [{"name": "s1", "size": 9}], "tags": ["red"],
                            "hosts": ["h2"]}
    fields = {e["manager"]: e["fieldsV1"] for e in rack["metadata"]["managedFields"]}
    assert fields["a"] == {"f:spec": {"f:slots": {'k:{"name":"s1"}': {".": {}, "f:name": {}}},
                                      "f:tags": {'v:"red"': {}}}}
    assert fields["b"] == {"f:spec": {"f:hosts": {}, "f:slots": {
        'k:{"name":"s1"}': {".": {}, "f:name": {}, "f:size": {}}}}}


def test_field_manager_longer_than_128_bytes_is_refused(core: k8s.CoreV1Api, dyn: Any) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", _cm("long", {"a": "1"}),
                                          field_manager="m" * 129)
    body = json.loads(err.value.body)
    assert err.value.status == 422
    assert body["message"] == ('CreateOptions.meta.k8s.io "" is invalid: fieldManager: '
                               'Too long: may not be more than 128 bytes')
    core.create_namespaced_config_map("default", _cm("long", {"a": "1"}),
                                      field_manager="m" * 128)
    with pytest.raises(ApiException) as patched:
        _patch_raw(dyn, _cm_path("long"), _cm("long", {"a": "2"}), fieldManager="x" * 200)
    assert json.loads(patched.value.body)["details"]["causes"] == [
        {"reason": "FieldValueTooLong", "message": "Too long: may not be more than 128 bytes",
         "field": "fieldManager"}]
