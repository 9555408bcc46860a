"""The OpenAPI documents: ``/openapi/v3`` (discovery, per group-version documents with schemas,
hash caching), ``/openapi/v2`` (one Swagger document, ETag), and ``kubectl explain`` over them for
KubeVirt, CDI, core and newly created CRD kinds."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from statemachine.sim.cluster import SimulatedClusters

MakeSim = Callable[..., SimulatedClusters]


class Getter:
    def __init__(self, sim: SimulatedClusters) -> None:
        self.sim = sim
        self.ctx = ssl.create_default_context(cafile=str(sim.ca_path))

    def __call__(self, path: str, **headers: str) -> tuple[int, dict[str, str], Any]:
        req = urllib.request.Request(self.sim.url("source") + path, headers={
            "Authorization": f"Bearer {self.sim.token('source')}", **headers})
        try:
            with urllib.request.urlopen(req, context=self.ctx) as resp:
                data = resp.read()
                return resp.status, dict(resp.headers.items()), json.loads(data) if data else None
        except urllib.error.HTTPError as err:
            data = err.read()
            return err.code, dict(err.headers.items()), json.loads(data) if data else None


def test_openapi_v3_documents(make_sim: MakeSim) -> None:
    get = Getter(make_sim(controllers=False))
    code, headers, root = get("/openapi/v3")
    assert code == 200 and "api/v1" in root["paths"]
    url = root["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/kubevirt.io/v1?hash=")
    code, headers, doc = get(url)
    assert headers["Cache-Control"] == "public, immutable"
    assert doc["openapi"].startswith("3.")
    op = doc["paths"]["/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}"][
        "patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "kubevirt.io", "version": "v1",
                                                     "kind": "VirtualMachine"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]
    vm = doc["components"]["schemas"]["io.kubevirt.v1.VirtualMachine"]
    assert vm["x-kubernetes-group-version-kind"] == [
        {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"}]
    assert vm["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "runStrategy" in vm["properties"]["spec"]["properties"]
    assert "labels" in doc["components"]["schemas"][
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    _, headers, _ = get("/openapi/v3/apis/kubevirt.io/v1")
    assert headers["Cache-Control"] == "no-cache, private"
    _, _, core = get(root["paths"]["api/v1"]["serverRelativeURL"])
    cm = core["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"]
    assert set(cm["properties"]) >= {"data", "binaryData", "immutable", "metadata"}
    assert get("/openapi/v3/apis/nope.io/v1")[0] == 404


def test_openapi_v2_document(make_sim: MakeSim) -> None:
    get = Getter(make_sim(controllers=False))
    code, headers, doc = get("/openapi/v2", Accept="application/json")
    assert code == 200 and doc["swagger"] == "2.0"
    vm = doc["definitions"]["io.kubevirt.v1.VirtualMachine"]
    assert vm["x-kubernetes-group-version-kind"][0]["kind"] == "VirtualMachine"
    memory = vm["properties"]["spec"]["properties"]["template"]["properties"]["spec"][
        "properties"]["domain"]["properties"]["resources"]["properties"]["requests"][
        "additionalProperties"]
    assert "anyOf" not in memory  # Swagger 2.0 cannot say anyOf
    assert "io.k8s.api.core.v1.ConfigMap" in doc["definitions"]
    assert get("/openapi/v2", **{"If-None-Match": headers["Etag"]})[0] == 304
    code, _, status = get("/openapi/v2",
                          Accept="application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert code == 406 and status["reason"] == "NotAcceptable"


def test_kubectl_explain(sim: SimulatedClusters, kubectl: Callable[..., Any]) -> None:
    out = kubectl("explain", "virtualmachine.spec.runStrategy").stdout
    assert "KIND:       VirtualMachine" in out and "FIELD: runStrategy <string>" in out
    assert "Halted" in out
    out = kubectl("explain", "vmi").stdout
    assert "VirtualMachineInstance" in out and "spec\t<Object> -required-" in out
    out = kubectl("explain", "configmap").stdout
    assert "KIND:       ConfigMap" in out and "binaryData\t<map[string]string>" in out
    out = kubectl("explain", "dv.spec.source.http.url").stdout
    assert "FIELD: url <string>" in out
    out = kubectl("explain", "pvc.spec.accessModes").stdout
    assert "<[]string>" in out
    out = kubectl("explain", "vm.metadata.labels").stdout
    assert "map[string]string" in out


def test_kubectl_explain_a_new_crd(sim: SimulatedClusters, kubectl: Callable[..., Any],
                                   tmp_path: Any) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                      "spec": {"type": "object", "properties": {"size": {
                                          "type": "integer",
                                          "description": "How big the widget is."}}}}}}}]}}
    path = tmp_path / "crd.json"
    path.write_text(json.dumps(crd))
    kubectl("apply", "-f", str(path))
    out = kubectl("explain", "widget.spec.size").stdout
    assert "FIELD: size <integer>" in out and "How big the widget is." in out
