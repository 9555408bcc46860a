"""The OpenAPI documents kubectl needs."""
from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Callable
from typing import Any

from statemachine.sim.cluster import SimulatedClusters

MakeSim = Callable[..., SimulatedClusters]


def _vm(name: str, spec_extra: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {**spec_extra, "template": {"spec": {"domain": {
                "devices": {}, "resources": {"requests": {"memory": "1Gi"}}}}}}}


def test_openapi_v3_stub(make_sim: MakeSim) -> None:
    sim = make_sim(controllers=False)
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))

    def get(path: str) -> Any:
        req = urllib.request.Request(sim.url("source") + path, headers={
            "Authorization": f"Bearer {sim.token('source')}"})
        with urllib.request.urlopen(req, context=ctx) as resp:
            return json.load(resp)

    root = get("/openapi/v3")
    url = root["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"]
    doc = get(url)
    op = doc["paths"]["/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "kubevirt.io", "version": "v1",
                                                     "kind": "VirtualMachine"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]
    assert "api/v1" in root["paths"]
