"""CustomResourceDefinitions: a CRD makes its kind served (discovery, REST, watch) at once, with
its structural schema (validation, pruning, defaulting, strict field validation), status and
scale subresources, printer columns and selectable fields; deleting it removes the kind and its
objects. The KubeVirt/CDI kinds are CRDs too. Through kubectl, the DynamicClient and lightkube."""
from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.dynamic import exceptions as dexc

from statemachine.sim.cluster import SimulatedClusters

MERGE = "application/merge-patch+json"
SHIRT_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "shirts.stable.example.com"},
    "spec": {
        "group": "stable.example.com", "scope": "Namespaced",
        "names": {"plural": "shirts", "singular": "shirt", "kind": "Shirt",
                  "shortNames": ["sh"], "categories": ["all"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}, "scale": {
                "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector"}},
            "additionalPrinterColumns": [
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            "selectableFields": [{"jsonPath": ".spec.color"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["color"], "properties": {
                    "color": {"type": "string", "enum": ["red", "blue"]},
                    "size": {"type": "string", "default": "M"},
                    "replicas": {"type": "integer", "minimum": 0},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
                "status": {"type": "object", "properties": {
                    "replicas": {"type": "integer"}, "selector": {"type": "string"},
                    "phase": {"type": "string"}}}}}}}]}}


def _shirt(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "stable.example.com/v1", "kind": "Shirt",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


class Raw:
    def __init__(self, sim: SimulatedClusters) -> None:
        self.sim = sim
        self.ctx = ssl.create_default_context(cafile=str(sim.ca_path))

    def call(self, method: str, path: str, body: Any = None,
             ctype: str = "application/json") -> tuple[int, Any]:
        req = urllib.request.Request(
            self.sim.url("source") + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.sim.token('source')}",
                     "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, context=self.ctx) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)


def test_crd_is_served_within_a_second_and_established(
        sim: SimulatedClusters, kubectl: Callable[..., Any], tmp_path: Path) -> None:
    raw = Raw(sim)
    started = time.monotonic()
    code, crd = raw.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                         SHIRT_CRD)
    assert code == 201, crd
    conditions = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["reason"] == "NoConflicts"
    assert crd["status"]["acceptedNames"]["listKind"] == "ShirtList"
    assert crd["status"]["storedVersions"] == ["v1"]
    code, doc = raw.call("GET", "/apis/stable.example.com/v1")
    assert code == 200 and time.monotonic() - started < 1.0
    names = [r["name"] for r in doc["resources"]]
    assert names == ["shirts", "shirts/status", "shirts/scale"]
    assert doc["resources"][0]["shortNames"] == ["sh"]
    code, _ = raw.call("POST", "/apis/stable.example.com/v1/namespaces/default/shirts",
                       _shirt("one", {"color": "red"}))
    assert code == 201
    # kubectl: wait for Established, get via the short name
    kubectl("wait", "--for=condition=Established", "crd/shirts.stable.example.com",
            "--timeout=5s")
    out = kubectl("get", "sh", "-o", "json").stdout
    assert [i["metadata"]["name"] for i in json.loads(out)["items"]] == ["one"]


def test_watch_on_a_new_kind(sim: SimulatedClusters, dynamic_client: Any) -> None:
    dyn = dynamic_client(sim)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    crds.create(body=SHIRT_CRD)
    dyn.resources.invalidate_cache()
    shirts = dyn.resources.get(api_version="stable.example.com/v1", kind="Shirt")
    seen: list[tuple[str, str]] = []

    def watch() -> None:
        for event in shirts.watch(namespace="default", timeout=5):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                return

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.3)
    shirts.create(body=_shirt("w", {"color": "blue"}), namespace="default")
    shirts.patch(name="w", namespace="default", content_type=MERGE,
                 body={"spec": {"color": "red"}})
    thread.join(10)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w")]


def test_schema_validation_pruning_defaulting(sim: SimulatedClusters,
                                              dynamic_client: Any) -> None:
    raw = Raw(sim)
    assert raw.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                    SHIRT_CRD)[0] == 201
    base = "/apis/stable.example.com/v1/namespaces/default/shirts"
    code, status = raw.call("POST", base, _shirt("bad", {"color": "green", "replicas": -1}))
    assert code == 422, status
    assert status["message"] == (
        'Shirt.stable.example.com "bad" is invalid: [spec.color: Unsupported value: "green": '
        'supported values: "red", "blue", spec.replicas: Invalid value: -1: spec.replicas in '
        'body should be greater than or equal to 0]')
    assert {c["reason"] for c in status["details"]["causes"]} == {
        "FieldValueNotSupported", "FieldValueInvalid"}
    code, status = raw.call("POST", base, _shirt("nocolor", {}))
    assert code == 422 and status["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.color"}]
    # pruning (default Warn), preserve-unknown-fields kept, default filled in
    code, made = raw.call("POST", base, _shirt("ok", {"color": "red", "sleeve": "long",
                                                       "extra": {"any": {"thing": 1}}}))
    assert code == 201
    assert made["spec"] == {"color": "red", "size": "M", "extra": {"any": {"thing": 1}}}
    # strict: the unknown field is named, nothing stored
    code, status = raw.call("POST", base + "?fieldValidation=Strict",
                            _shirt("strict", {"color": "red", "sleeve": "long"}))
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == ('Shirt in version "v1" cannot be handled as a Shirt: strict '
                                 'decoding error: unknown field "spec.sleeve"')
    assert raw.call("GET", base + "/strict")[0] == 404
    # the DynamicClient sees the same 422
    shirts = dynamic_client(sim).resources.get(api_version="stable.example.com/v1",
                                                 kind="Shirt")
    with pytest.raises(dexc.UnprocessibleEntityError):
        shirts.patch(name="ok", namespace="default", content_type=MERGE,
                     body={"spec": {"color": "pink"}})


def test_kubectl_strict_apply_and_printer_columns(sim: SimulatedClusters,
                                                  kubectl: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(yaml.safe_dump(SHIRT_CRD))
    kubectl("apply", "-f", str(crd_file))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_shirt("typo", {"color": "red", "colour": "red"})))
    proc = kubectl("apply", "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert 'strict decoding error: unknown field "spec.colour"' in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_shirt("tee", {"color": "blue"})))
    kubectl("apply", "-f", str(good))
    kind = sim.store("source").registry.by_kind("stable.example.com/v1", "Shirt")
    assert kind is not None
    assert [c["name"] for c in kind.printer_columns] == ["Color", "Age"]
    assert kind.selectable_fields == (".spec.color",)
    assert kind.categories == ("all",)


def test_status_and_scale_subresources(sim: SimulatedClusters, kubectl: Callable[..., Any],
                                       dynamic_client: Any) -> None:
    raw = Raw(sim)
    raw.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SHIRT_CRD)
    base = "/apis/stable.example.com/v1/namespaces/default/shirts"
    made = raw.call("POST", base, {**_shirt("s", {"color": "red", "replicas": 1}),
                                   "status": {"phase": "Ignored"}})[1]
    assert "status" not in made  # the status subresource owns status
    code, after = raw.call("PATCH", base + "/s/status",
                           {"status": {"replicas": 1, "selector": "app=s", "phase": "Up"},
                            "spec": {"color": "blue"}}, MERGE)
    assert code == 200 and after["spec"]["color"] == "red" and after["status"]["phase"] == "Up"
    code, scale = raw.call("GET", base + "/s/scale")
    assert code == 200
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"] == {"replicas": 1, "selector": "app=s"}
    kubectl("scale", "shirt/s", "--replicas=3")
    assert sim.store("source").get("Shirt", "default", "s")["spec"]["replicas"] == 3
    code, status = raw.call("PATCH", base + "/s/scale", {"spec": {"replicas": -2}}, MERGE)
    assert code == 422 and status["reason"] == "Invalid"
    assert raw.call("GET", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/x/scale")[
        0] == 404


def test_deleting_the_crd_removes_kind_and_objects(sim: SimulatedClusters,
                                                   kubectl: Callable[..., Any]) -> None:
    raw = Raw(sim)
    raw.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SHIRT_CRD)
    base = "/apis/stable.example.com/v1/namespaces/default/shirts"
    raw.call("POST", base, _shirt("a", {"color": "red"}))
    raw.call("POST", base, {**_shirt("b", {"color": "red"}),
                            "metadata": {"name": "b", "finalizers": ["example.com/keep"]}})
    kubectl("delete", "crd", "shirts.stable.example.com")
    assert raw.call("GET", base)[0] == 404
    assert raw.call("GET", "/apis/stable.example.com/v1")[0] == 404
    groups = [g["name"] for g in raw.call("GET", "/apis")[1]["groups"]]
    assert "stable.example.com" not in groups
    # created again: served again, empty
    raw.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SHIRT_CRD)
    code, items = raw.call("GET", base)
    assert code == 200 and items["items"] == []


def test_invalid_crds_are_refused(sim: SimulatedClusters) -> None:
    raw = Raw(sim)
    bad = json.loads(json.dumps(SHIRT_CRD))
    bad["metadata"]["name"] = "shirts.example.com"
    bad["spec"]["versions"][0]["storage"] = False
    code, status = raw.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                            bad)
    assert code == 422 and status["reason"] == "Invalid"
    fields = [c["field"] for c in status["details"]["causes"]]
    assert fields == ["metadata.name", "spec.versions"]
    assert status["message"].startswith(
        'CustomResourceDefinition.apiextensions.k8s.io "shirts.example.com" is invalid: '
        '[metadata.name: Invalid value: "shirts.example.com": must be '
        'spec.names.plural+"."+spec.group')


def test_kubevirt_kinds_are_crds(sim: SimulatedClusters, kubectl: Callable[..., Any]) -> None:
    out = json.loads(kubectl("get", "crd", "-o", "json").stdout)
    by_name = {i["metadata"]["name"]: i for i in out["items"]}
    for name in ("virtualmachines.kubevirt.io", "virtualmachineinstances.kubevirt.io",
                 "virtualmachineinstancemigrations.kubevirt.io", "datavolumes.cdi.kubevirt.io",
                 "virtualmachineexports.export.kubevirt.io",
                 "virtualmachinebackups.backup.kubevirt.io",
                 "virtualmachineinstancetypes.instancetype.kubevirt.io"):
        assert name in by_name, name
    vm = by_name["virtualmachines.kubevirt.io"]
    assert vm["spec"]["names"]["shortNames"] == ["vm", "vms"]
    assert vm["spec"]["scope"] == "Namespaced"
    version = vm["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Age", "Status", "Ready"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "runStrategy" in spec["properties"]
    assert "subresources" not in by_name["virtualmachineinstances.kubevirt.io"]["spec"][
        "versions"][0]
    cluster_pref = by_name["virtualmachineclusterpreferences.instancetype.kubevirt.io"]
    assert cluster_pref["spec"]["scope"] == "Cluster"
    established = {c["type"]: c["status"] for c in vm["status"]["conditions"]}
    assert established == {"NamesAccepted": "True", "Established": "True"}


def test_lightkube_creates_a_crd_and_its_objects(sim: SimulatedClusters) -> None:
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    config = KubeConfig.from_file(str(sim.kubeconfig_path)).get(context_name="source")
    client = Client(config=config, field_manager="test")
    client.create(CustomResourceDefinition.from_dict(SHIRT_CRD))
    Shirt = create_namespaced_resource("stable.example.com", "v1", "Shirt", "shirts")
    made = client.create(Shirt.from_dict(_shirt("lk", {"color": "blue"})), namespace="default")
    assert made.spec == {"color": "blue", "size": "M"}
    with pytest.raises(ApiError) as err:
        client.create(Shirt.from_dict(_shirt("lk2", {"color": 7})), namespace="default")
    assert err.value.status.code == 422
    client.delete(CustomResourceDefinition, "shirts.stable.example.com")
    with pytest.raises(ApiError) as err:
        client.get(Shirt, "lk", namespace="default")
    assert err.value.status.code == 404


def test_builtin_replica_set_has_the_scale_subresource(sim: SimulatedClusters,
                                                       kubectl: Callable[..., Any]) -> None:
    raw = Raw(sim)
    rs = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet",
          "metadata": {"name": "rs", "namespace": "default"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rs"}},
                   "template": {"metadata": {"labels": {"app": "rs"}},
                                "spec": {"domain": {"devices": {}}}}}}
    code, made = raw.call("POST", "/apis/kubevirt.io/v1/namespaces/default/"
                                  "virtualmachineinstancereplicasets", rs)
    assert code == 201, made
    assert made["spec"]["template"]["metadata"]["labels"] == {"app": "rs"}  # kept, not pruned
    kubectl("scale", "vmirs/rs", "--replicas=2")
    code, scale = raw.call("GET", "/apis/kubevirt.io/v1/namespaces/default/"
                                  "virtualmachineinstancereplicasets/rs/scale")
    assert code == 200 and scale["spec"] == {"replicas": 2}
    kubectl("get", "vmsnapshots,vmrestores,migrationpolicies,datasources")


def test_a_seed_may_define_crds_and_their_objects(make_sim: Callable[..., SimulatedClusters],
                                                  dynamic_client: Any) -> None:
    from statemachine.errors import SmrunError
    seeded = make_sim(controllers=False, seed={"source": [
        SHIRT_CRD, {**_shirt("seeded", {"color": "red"}),
                    "metadata": {"name": "seeded", "namespace": "wardrobe"}}]})
    dyn = dynamic_client(seeded)
    shirts = dyn.resources.get(api_version="stable.example.com/v1", kind="Shirt")
    assert [s.metadata.name for s in shirts.get(namespace="wardrobe").items] == ["seeded"]
    crd = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                            kind="CustomResourceDefinition").get(name=SHIRT_CRD["metadata"]["name"])
    assert [c.type for c in crd.status.conditions] == ["NamesAccepted", "Established"]
    # not on the other cluster
    assert seeded.store("target").registry.by_kind("stable.example.com/v1", "Shirt") is None
    bad = json.loads(json.dumps(SHIRT_CRD))
    bad["spec"]["scope"] = "Galaxy"
    with pytest.raises(SmrunError, match="spec.scope: Unsupported value"):
        make_sim(controllers=False, seed={"source": [bad]})


def test_deprecated_version_warns(sim: SimulatedClusters, kubectl: Callable[..., Any],
                                  tmp_path: Path) -> None:
    crd = json.loads(json.dumps(SHIRT_CRD))
    old = json.loads(json.dumps(crd["spec"]["versions"][0]))
    old.update(name="v1beta1", storage=False, deprecated=True)
    crd["spec"]["versions"].append(old)
    path = tmp_path / "crd.json"
    path.write_text(json.dumps(crd))
    kubectl("apply", "-f", str(path))
    proc = kubectl("get", "shirts.v1beta1.stable.example.com")
    assert "Warning: stable.example.com/v1beta1 Shirt is deprecated" in proc.stderr
    crd["spec"]["versions"][1]["deprecationWarning"] = "use v1"
    path.write_text(json.dumps(crd))
    kubectl("apply", "-f", str(path))
    assert "Warning: use v1" in kubectl("get", "shirts.v1beta1.stable.example.com").stderr
    assert "Warning" not in kubectl("get", "shirts.v1.stable.example.com").stderr


def test_other_custom_kinds_are_crds_too(sim: SimulatedClusters, kubectl: Callable[..., Any]) -> None:
    names = kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/" \
           "network-attachment-definitions.k8s.cni.cncf.io" in names
    assert "customresourcedefinition.apiextensions.k8s.io/serviceexports.multicluster.x-k8s.io" \
        in names


def test_watches_end_when_the_crd_is_deleted(sim: SimulatedClusters,
                                             dynamic_client: Any) -> None:
    dyn = dynamic_client(sim)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    crds.create(body=SHIRT_CRD)
    shirts = dyn.resources.get(api_version="stable.example.com/v1", kind="Shirt")
    shirts.create(body=_shirt("gone", {"color": "red"}), namespace="default")
    seen: list[str] = []
    ended = threading.Event()

    def watch() -> None:
        for event in shirts.watch(namespace="default", timeout=30):
            seen.append(event["type"])
        ended.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.3)
    crds.delete(name=SHIRT_CRD["metadata"]["name"])
    assert ended.wait(5), "the watch did not end"
    assert seen == ["ADDED", "DELETED"]
